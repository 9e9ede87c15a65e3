"""Where study files are found: the working folder's studies/ before the shipped ones."""

from __future__ import annotations

from pathlib import Path

from hpsearch.studyfile import catalog

REPOSITORY = Path(__file__).resolve().parents[2]


def test_a_study_in_the_working_folder_comes_before_a_shipped_one(isolated):
    (isolated / "studies").mkdir()
    mine = isolated / "studies" / "digits-quick.yaml"
    mine.write_text((REPOSITORY / "studies" / "digits-quick.yaml").read_text().replace("name: digits-quick", "name: mine"))
    assert catalog.find_study_file("digits-quick") == Path("studies/digits-quick.yaml")
    assert catalog.load_study_spec("digits-quick").name == "mine"
