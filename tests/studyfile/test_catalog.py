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


def test_a_study_file_that_shadows_a_shipped_one_is_named_once_on_stderr(isolated, caplog):
    (isolated / "studies").mkdir()
    (isolated / "studies" / "digits-quick.yaml").write_text((REPOSITORY / "studies" / "digits-quick.yaml").read_text())
    (isolated / "studies" / "my-own.yaml").write_text((REPOSITORY / "studies" / "digits-quick.yaml").read_text()
                                                      .replace("name: digits-quick", "name: my-own"))
    catalog._shadowing_said.clear()
    with caplog.at_level("WARNING"):
        catalog.load_study_spec("digits-quick")
        catalog.load_study_spec("digits-quick")  # a command that looks twice says it once
        catalog.load_study_spec("my-own")  # shadows nothing
    assert [r.getMessage() for r in caplog.records] == [
        f"note: using studies/digits-quick.yaml from this folder, which shadows the shipped study digits-quick (run "
        f"that one with --study {catalog.SHIPPED_DIR / 'digits-quick.yaml'})"]


def test_runs_help_says_where_a_study_name_is_looked_for():
    from tests.helpers import invoke

    text = " ".join(invoke("run", "--help").stdout.split())
    assert "./studies/NAME.yaml in the current folder if there is one (it shadows a shipped study of that name" in text
