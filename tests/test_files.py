"""Files hpsearch writes appear whole or not at all, and a refused command leaves no half-made output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.errors import HpsearchError
from hpsearch.files import output_folder, save_atomic, write_atomic

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_debris(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"the old plot")

    def save_then_fail(temporary: Path) -> None:
        temporary.write_bytes(b"half a plo")
        raise OSError(28, "No space left on device")

    with pytest.raises(HpsearchError, match=r"cannot write .*plot.png \(No space left on device\): free space"):
        save_atomic(path, save_then_fail)
    assert path.read_bytes() == b"the old plot" and [p.name for p in tmp_path.iterdir()] == ["plot.png"]
    write_atomic(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_a_refusal_removes_the_output_folder_it_made_but_never_one_that_was_there(tmp_path):
    with pytest.raises(HpsearchError), output_folder(tmp_path / "new" / "out", "--out") as made:
        (made / "config.yaml").write_text("x")
        raise HpsearchError("refused")
    assert not (tmp_path / "new" / "out").exists()
    (tmp_path / "there").mkdir()
    with pytest.raises(HpsearchError), output_folder(tmp_path / "there", "--out"):
        raise HpsearchError("refused")
    assert (tmp_path / "there").is_dir()


@pytest.fixture
def exported(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copy(FIXTURES / "old.db", tmp_path / "old.db")
    result = CliRunner().invoke(main, ["export", "--study", "tiny", "--storage", "sqlite:///old.db", "-o", "t.yaml"])
    assert result.exit_code == 0, result.output
    return tmp_path / "t.yaml"


def test_export_to_an_impossible_place_is_one_line(exported):
    result = CliRunner().invoke(main, ["export", "--study", "tiny", "--storage", "sqlite:///old.db",
                                       "-o", "/proc/t.yaml"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip() == "error: cannot write /proc/t.yaml (No such file or directory): free space there " \
                                    "or choose another place"


def test_a_refused_train_leaves_no_output_folder(exported, tmp_path, monkeypatch):
    config = yaml.safe_load(exported.read_text())
    config["dataset"]["name"] = "cifar10"  # not on this machine, and downloads are off
    exported.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("HPSEARCH_OFFLINE", "1")
    result = CliRunner().invoke(main, ["train", "--config", "t.yaml", "--out", "trained", "--device", "cpu",
                                       "--data-dir", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "cifar10 not found" in result.output
    assert not (tmp_path / "trained").exists()
