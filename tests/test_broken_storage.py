"""A storage broken under hpsearch (damaged pages, a full disk, a read-only file) ends a command in one line
that says what happened and what to do, and hpsearch writes nothing to it."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
from pathlib import Path

import optuna
import yaml

import pytest
import sqlalchemy.exc
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.storage import storage_failure

FIXTURES = Path(__file__).parent / "fixtures"
PAGE = 4096


@pytest.fixture
def damaged(tmp_path, monkeypatch) -> Path:
    """tests/fixtures/old.db with the start of every page from the tenth on overwritten: the header and schema
    read, the trials do not."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "damaged.db"
    shutil.copy(FIXTURES / "old.db", path)
    data = bytearray(path.read_bytes())
    for start in range(10 * PAGE, len(data), PAGE):
        data[start:start + 100] = b"\xff" * 100
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("command", [["best"], ["report"], ["export", "-o", "t.yaml"], ["dashboard"],
                                     ["run", "--n-trials", "1"]])
def test_a_damaged_database_is_one_line_and_left_as_it_is(damaged, command):
    before = hashlib.sha256(damaged.read_bytes()).hexdigest()
    study = "digits-quick" if command[0] == "run" else "tiny"
    result = CliRunner().invoke(main, [command[0], "--study", study, "--storage", f"sqlite:///{damaged}",
                                       *command[1:]])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "database disk image is malformed: the file is damaged" in lines[0], result.output
    assert "sqlite3 FILE .recover" in lines[0]
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() == before


@pytest.fixture
def small_disk(tmp_path):
    """mount(size, at=None) -> a folder on a fresh tmpfs of that size, `at` that path or a new one (the mount is
    undone after the test); skipped where this process may not mount (CI runs as root, which may)."""
    mounted = []

    def mount(size: str, at: Path | None = None) -> Path:
        point = at or tmp_path / f"disk{len(mounted)}"
        point.mkdir(parents=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:80]}): needs root")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def remount(point: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(point)], check=True)


def test_readers_read_a_study_in_a_read_only_place_and_run_says_read_only(small_disk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    disk = small_disk("4m")
    shutil.copy(FIXTURES / "old.db", disk / "old.db")
    remount(disk, "ro")
    storage = ["--storage", f"sqlite:///{disk / 'old.db'}"]
    for command in (["best"], ["report"], ["export", "-o", "t.yaml"]):
        result = CliRunner().invoke(main, [command[0], "--study", "tiny", *storage, *command[1:]])
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["run", "--study", "digits-quick", *storage])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"error: the SQLite storage {disk / 'old.db'} is read-only: make it "
                                                  "writable (choose another with --storage; best, report and export "
                                                  "read it where it is)"]


FILLING = {"name": "full", "dataset": {"name": "digits", "validation": 0.15, "test": 0.2},
           "budget": {"epochs": 1, "trials": 200}, "sampler": {"name": "random"},
           "space": {"lr": {"float": [0.01, 0.2], "log": True}},
           "fixed": {"blocks": 1, "convs_per_block": 1, "width": 4, "batch_size": 256}}


def test_a_disk_that_fills_mid_run_is_one_line_and_a_rerun_after_freeing_space_goes_on(small_disk, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "full.yaml").write_text(yaml.safe_dump(FILLING))
    disk = small_disk("200k")  # Optuna's empty schema takes most of it: a few trials fill the rest
    storage = f"sqlite:///{disk / 'full.db'}"
    result = CliRunner().invoke(main, ["run", "--study", "full.yaml", "--storage", storage])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        "error: the storage failed: database or disk is full: the disk holding the storage is full: free space and "
        "run the same command again (finished trials are kept; the interrupted one resumes)")
    kept = sum(t.state == optuna.trial.TrialState.COMPLETE
               for t in optuna.load_study(study_name="full", storage=storage).trials)
    assert kept > 0
    remount(disk, "size=4m")  # space freed
    result = CliRunner().invoke(main, ["run", "--study", "full.yaml", "--storage", storage, "--n-trials", "2"])
    assert result.exit_code == 0, result.output
    again = optuna.load_study(study_name="full", storage=storage).trials
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in again) == kept + 2


def test_a_full_disk_mid_run_names_the_fix():
    """The error SQLite raises when a write finds no space, as SQLAlchemy wraps it."""
    full = sqlalchemy.exc.OperationalError("INSERT INTO trials", {}, sqlite3.OperationalError("database or disk is full"))
    assert "the disk holding the storage is full: free space and run the same command again" in str(
        storage_failure(full))
    assert storage_failure(ValueError("not a database error")) is None


def fill(folder: Path, leave: int = 0) -> None:
    """Fill the tmpfs `folder` is on, leaving `leave` bytes (whole pages) free."""
    free = shutil.disk_usage(folder).free - leave
    with open(folder / "filler", "wb", buffering=0) as file:
        while free > 0:
            free -= file.write(b"\0" * min(free, 1 << 16))


# Weights (~40 kB) and a checkpoint (~80 kB) that a 16 kB disk cannot hold; its first page takes the probe.
WIDE = {"name": "wide", "dataset": {"name": "digits", "validation": 0.15, "test": 0.2},
        "budget": {"epochs": 2, "trials": 1}, "sampler": {"name": "random", "seed": 0},
        "space": {"lr": {"float": [0.01, 0.1], "log": True}},
        "fixed": {"blocks": 1, "convs_per_block": 2, "width": 32, "batch_size": 256}}


def no_partial_files(folder: Path) -> bool:
    return not any(p.name.endswith(".partial") for p in folder.rglob("*"))


@pytest.mark.parametrize("kind", ["artifact", "checkpoint"])
@pytest.mark.parametrize("broken", ["full", "read-only"])
def test_a_full_or_read_only_weights_or_checkpoint_folder_is_refused_before_any_training(small_disk, tmp_path,
                                                                                        kind, broken):
    (tmp_path / "wide.yaml").write_text(yaml.safe_dump(WIDE))
    folder = small_disk("16k", at=tmp_path / "wide-files" / f"{kind}s")
    if broken == "full":
        fill(folder)
    else:
        remount(folder, "ro")
    storage = f"sqlite:///{tmp_path / 'wide.db'}"
    result = CliRunner().invoke(main, ["run", "--study", "wide.yaml", "--storage", storage])
    assert result.exit_code == 2 and "Traceback" not in result.output
    why, fix = (("No space left on device", "free space there") if broken == "full" else
                ("Read-only file system", "make it writable"))
    otherwise = "keep no weights (--keep-weights 0)" if kind == "artifact" else "choose another storage"
    assert result.stderr.strip().splitlines() == [f"error: cannot write the {kind} folder {folder} ({why}): {fix} or "
                                                  f"{otherwise}"]
    assert not (tmp_path / "wide.db").exists() and no_partial_files(tmp_path)


def test_a_trained_trial_whose_weights_do_not_fit_stays_complete_and_says_its_weights_were_not_kept(small_disk,
                                                                                                   tmp_path):
    (tmp_path / "wide.yaml").write_text(yaml.safe_dump(WIDE))
    folder = small_disk("16k", at=tmp_path / "wide-files" / "artifacts")
    storage = f"sqlite:///{tmp_path / 'wide.db'}"
    result = CliRunner().invoke(main, ["run", "--study", "wide.yaml", "--storage", storage, "--device", "cpu"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    (trial,) = optuna.load_study(study_name="wide", storage=storage).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == trial.user_attrs["val_accuracy"] > 0
    assert trial.user_attrs["test_accuracy"] > 0 and "weights_artifact" not in trial.user_attrs
    assert trial.user_attrs["weights_not_kept"].startswith(f"cannot write {folder}/")
    assert trial.user_attrs["weights_not_kept"].endswith(" (No space left on device): free space there")
    assert f"complete: val {trial.value:.4f}" in result.output
    assert f"; weights not kept: {trial.user_attrs['weights_not_kept']}" in result.output
    assert list(folder.iterdir()) == [] and no_partial_files(tmp_path)
    exported = CliRunner().invoke(main, ["export", "--study", "wide", "--storage", storage, "-o",
                                         str(tmp_path / "best.yaml")])
    assert exported.exit_code == 0 and (f"trial #0 has no stored weights (they could not be written: "
                                        f"{trial.user_attrs['weights_not_kept']})") in exported.stderr


def test_a_checkpoint_that_does_not_fit_is_a_warning_and_the_trial_trains_on(small_disk, tmp_path, caplog):
    (tmp_path / "wide.yaml").write_text(yaml.safe_dump(WIDE))
    folder = small_disk("16k", at=tmp_path / "wide-files" / "checkpoints")
    storage = f"sqlite:///{tmp_path / 'wide.db'}"
    result = CliRunner().invoke(main, ["run", "--study", "wide.yaml", "--storage", storage, "--device", "cpu",
                                       "--keep-weights", "0"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    (trial,) = optuna.load_study(study_name="wide", storage=storage).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs["epochs"] == 2
    (warning,) = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
    assert warning.startswith(f"cannot write the checkpoint {folder}/") and "(No space left on device)" in warning
    assert [p for p in folder.rglob("*") if p.is_file()] == [] and no_partial_files(tmp_path)
