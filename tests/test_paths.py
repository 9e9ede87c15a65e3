"""What hpsearch writes, and where: file names safe whatever the study is called, nothing from a
command that only reads, and no worker logs left behind after a run that ended well."""

from __future__ import annotations

import re
import tempfile

import pytest
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.paths import slug
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.schema import load_spec

AWKWARD_NAMES = ["../../escaped", "a/b", "a_b", "with space", "névé ☃", "..", ".hidden", "/abs/path", ""]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_slug_is_one_safe_file_name_component(name):
    made = slug(name)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*-[0-9a-f]{8}|_-[0-9a-f]{8}", made), made


def test_slug_tells_names_apart_and_keeps_them_readable():
    assert len({slug(n) for n in AWKWARD_NAMES}) == len(AWKWARD_NAMES)
    assert slug("digits-quick").startswith("digits-quick-") and slug("x" * 300).startswith("x" * 40 + "-")
    assert slug("a/b") == slug("a/b")


def files_in(folder):
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def test_a_study_named_to_escape_writes_only_beside_its_storage(write_study, tmp_path):
    """Checkpoints, the lock, weights: every file of a run lands in the storage's side folder, whatever the name."""
    store = tmp_path / "store"
    store.mkdir()
    path = write_study(name="../../escaped/névé ☃", budget={"epochs": 2, "trials": 1})
    outside = files_in(tmp_path) - {f"store/{f}" for f in files_in(store)}
    study = run(load_spec(path), f"sqlite:///{store / 'x.db'}", RunOptions(device="cpu", n_trials=1))
    assert study.trials[0].state.name == "COMPLETE"
    assert files_in(tmp_path) - {f"store/{f}" for f in files_in(store)} == outside | {"store"}
    written = files_in(store)
    name = slug("../../escaped/névé ☃")
    assert f"x-files/locks/{name}.lock" in written and f"x-files/checkpoints/{name}" in written
    assert not any(".." in part or " " in part for f in written for part in f.split("/"))


READ_ONLY = [["best"], ["export", "-o", "out.yaml"], ["report"], ["report", "--out", "report"], ["dashboard"]]


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: " ".join(c))
def test_read_only_commands_on_a_missing_storage_write_nothing(command, isolated):
    result = CliRunner().invoke(main, [command[0], "--study", "digits-quick", "--storage", "sqlite:///nothing.db",
                                       *command[1:]])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        "error: no storage nothing.db: nothing has run there yet (`hpsearch run` creates it; --storage or "
        "$HPSEARCH_STORAGE chooses another)"]
    assert files_in(isolated) == set()


def test_listing_commands_write_nothing(isolated):
    for command in (["baselines"], ["studies"], ["params"]):
        assert CliRunner().invoke(main, command).exit_code == 0
    assert files_in(isolated) == set()


def test_worker_logs_live_beside_the_storage_and_go_once_the_run_ends_well(write_study, storage, tmp_path,
                                                                          monkeypatch):
    temp = tmp_path / "temp"  # this run's (and its workers') temporary folder: hpsearch leaves nothing there
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    result = CliRunner().invoke(main, ["run", "--study", str(write_study(budget={"epochs": 1, "trials": 2})),
                                       "--storage", storage, "--device", "cpu", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "test-files" / "logs").exists()
    assert list(temp.glob("hpsearch*")) == []  # (torch keeps its own torchinductor_* cache there)


def test_worker_logs_of_a_failed_run_stay_beside_the_storage(write_study, storage, tmp_path):
    result = CliRunner().invoke(main, ["run", "--study", str(write_study(dataset={"name": "cifar10"})),
                                       "--storage", storage, "--device", "cpu", "--workers", "2"])
    assert result.exit_code == 2, result.output
    [folder] = (tmp_path / "test-files" / "logs").iterdir()
    assert folder.name.startswith(slug("tiny-digits") + "-")
    assert f"(logs: {folder})" in result.stderr
    assert "cifar10 not found" in (folder / "worker-0.log").read_text()


def test_a_run_leaves_the_storage_and_one_folder_of_side_files(write_study, tmp_path):
    run(load_spec(write_study(budget={"epochs": 1, "trials": 2})), "sqlite:///x.db", RunOptions(device="cpu"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "study.yaml") == ["x-files", "x.db"]
    assert {p.name for p in (tmp_path / "x-files").iterdir()} <= {"locks", "checkpoints", "artifacts", "logs"}


def test_a_study_stored_with_a_folder_per_kind_keeps_its_weights_and_checkpoints(write_study, tmp_path):
    """Earlier versions kept x-artifacts/ and x-checkpoints/ beside x.db: where they exist, they are used."""
    from hpsearch.results.artifacts import artifact_dir, load_trial_state_dict
    from hpsearch.training.checkpoint import checkpoint_root

    (tmp_path / "x-artifacts").mkdir()
    (tmp_path / "x-checkpoints").mkdir()
    study = run(load_spec(write_study(budget={"epochs": 1, "trials": 1})), "sqlite:///x.db", RunOptions(device="cpu"))
    assert artifact_dir("sqlite:///x.db").as_posix() == "x-artifacts"
    assert checkpoint_root("sqlite:///x.db").as_posix() == "x-checkpoints"
    assert len(list((tmp_path / "x-artifacts").iterdir())) == 1
    assert load_trial_state_dict("sqlite:///x.db", study.study_name)  # the kept weights load
