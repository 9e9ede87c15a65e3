"""Storage URLs: the default, opening, masking the password, side folders and locks; a lost worker's trial failed,
saying why, and retried from its checkpoint."""

from __future__ import annotations

import signal
import subprocess
import sys

import optuna
import pytest
import sqlalchemy
from click.testing import CliRunner
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from hpsearch.cli import main
from hpsearch.paths import slug
from hpsearch.search.retries import MAX_RETRIES, queue_retry
from hpsearch.search.run import RunOptions, run
from hpsearch.storage import (
    FileLock,
    NoLock,
    folder_beside,
    mask,
    open_storage,
    optuna_private,
    shared_lock,
    sqlite_file,
    storage_url,
)
from hpsearch.studyfile.schema import load_spec
from tests.helpers import (
    POSTGRES,
    SLOW,
    assert_clean_error,
    files_in,
    hpsearch,
    invoke,
    load,
    needs_postgres,
    outcome,
    wait_for,
)


def test_unwritable_sqlite_path(write_study):
    result = invoke("run", "--study", str(write_study()), "--storage", "sqlite:////nonexistent/dir/x.db")
    assert_clean_error(result, "cannot write the SQLite storage", "--storage")


def test_unreachable_storage_masks_the_password(write_study):
    result = invoke("run", "--study", str(write_study()), "--storage", "mysql://alice:s3cret@127.0.0.1:1/db")
    assert_clean_error(result, "cannot open storage mysql://alice:***@127.0.0.1:1/db")
    assert "s3cret" not in result.output


def test_readers_given_an_empty_file_as_storage_say_so_and_leave_it_empty(tmp_path):
    (tmp_path / "empty.db").write_bytes(b"")
    for command in (["best"], ["report"], ["export", "-o", "x.yaml"], ["confirm"]):
        assert_clean_error(invoke(*command, "--study", "s", "--storage", "sqlite:///empty.db"), "no storage empty.db")
    assert (tmp_path / "empty.db").read_bytes() == b""


def test_a_killed_worker_s_trial_is_retried_and_resumes_from_its_checkpoint(write_study, tmp_path):
    storage = f"sqlite:///{tmp_path / 'crash.db'}"
    path = write_study(budget={"epochs": 20, "trials": 2}, **SLOW)  # long enough to be killed mid-trial
    worker = hpsearch("worker", "--study", str(path), "--storage", storage, "--device", "cpu", "--until", "2",
                      "--heartbeat", "1")
    checkpoint = tmp_path / "crash-files" / "checkpoints" / slug("tiny-digits") / "trial-0.pt"

    def two_epochs_saved() -> bool:
        assert worker.poll() is None, worker.communicate()
        try:
            return checkpoint.is_file() and len(load(storage).trials[0].intermediate_values) >= 2
        except (KeyError, IndexError):
            return False

    wait_for(two_epochs_saved)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert load(storage).trials[0].state == TrialState.RUNNING  # what a dead worker leaves behind

    study = run(load_spec(path), storage, RunOptions(device="cpu", until=2, heartbeat=1))
    first, *rest = study.trials
    assert first.state == TrialState.FAIL and len(rest) == 2
    assert first.user_attrs["failure"].startswith("worker lost: no heartbeat from")
    assert first.user_attrs["epochs"] == max(first.intermediate_values) >= 2
    (retried,) = [t for t in rest if t.system_attrs.get("failed_trial") == 0]
    assert retried.state == TrialState.COMPLETE and retried.params == first.params
    assert retried.user_attrs["resumed_from_epoch"] >= 2
    assert not checkpoint.exists()  # cleaned up once the trial ended for good

    # Resuming is exact: the same trial run without interruption reaches the same numbers.
    clean = run(load_spec(path), f"sqlite:///{tmp_path / 'clean.db'}", RunOptions(device="cpu", n_trials=1))
    assert clean.trials[0].params == first.params
    assert clean.trials[0].value == retried.value
    assert clean.trials[0].user_attrs["test_accuracy"] == retried.user_attrs["test_accuracy"]


def test_a_lost_trial_that_optuna_fails_before_a_run_s_trial_is_queued_again(write_study, tmp_path, monkeypatch):
    """Optuna fails a stale trial itself before each trial it starts, without hpsearch's reason; the storage a run
    opens hands it to queue_retry all the same (open_storage's on_lost), so the copy runs."""
    from hpsearch.search import run as run_module

    url = f"sqlite:///{tmp_path / 'lost.db'}"
    spec = load_spec(write_study(budget={"epochs": 1, "trials": 3}))
    run(spec, url, RunOptions(device="cpu", n_trials=1))
    backend = open_storage(url, heartbeat=1)
    lost = optuna.load_study(study_name=spec.name, storage=backend).ask()
    lost.suggest_float("lr", 0.01, 0.2, log=True)
    lost.suggest_int("width", 4, 16)
    backend.record_heartbeat(optuna_private.trial_id(lost))
    with sqlalchemy.create_engine(url).begin() as connection:  # its worker went silent long ago
        connection.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'"))
    monkeypatch.setattr(run_module, "fail_lost_trials", lambda study: 0)  # hpsearch's own look leaves it to Optuna
    run(spec, url, RunOptions(device="cpu", n_trials=1, heartbeat=1))
    trials = load(url).trials
    assert trials[lost.number].state == TrialState.FAIL and "failure" not in trials[lost.number].user_attrs
    (copy,) = [t for t in trials if t.system_attrs.get("failed_trial") == lost.number]
    assert copy.state == TrialState.COMPLETE and copy.params == lost.params


@pytest.mark.parametrize("url, fragment", [
    ("postgresql://alice:s3cret@127.0.0.1:1/nowhere", "cannot open storage postgresql://alice:***@127.0.0.1:1/"),
    ("sqlite:////proc/no/such/dir/x.db", "cannot write the SQLite storage"),
])
def test_bad_storage_is_one_line_and_never_shows_the_password(write_study, url, fragment):
    code, out, err = outcome(invoke("run", "--study", str(write_study()), "--storage", url, "--workers", "2"))
    assert code == 2 and fragment in err and "s3cret" not in out + err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@needs_postgres
def test_wrong_postgresql_password_is_one_masked_line(write_study):
    wrong = sqlalchemy.engine.make_url(POSTGRES).set(password="not-the-password").render_as_string(False)
    code, _, err = outcome(invoke("run", "--study", str(write_study()), "--storage", wrong))
    assert code == 2 and "not-the-password" not in err and "Traceback" not in err
    assert "cannot open storage" in err and "password authentication failed" in err


def test_mask_hides_every_password():
    assert mask("postgresql+psycopg2://bob:pa:ss@db.example:5432/hp") == "postgresql+psycopg2://bob:***@db.example:5432/hp"
    assert mask("sqlite:///hpsearch.db") == "sqlite:///hpsearch.db"


def free_for_another_process(path) -> bool:
    """Whether another process could take the lock file at `path` now."""
    check = "import filelock, sys; filelock.FileLock(sys.argv[1]).acquire(timeout=0)"
    return subprocess.run([sys.executable, "-c", check, str(path)], capture_output=True).returncode == 0


@pytest.mark.parametrize("study_name", [None, "a/b"], ids=["storage lock", "study lock"])
def test_closing_a_storage_lock_frees_it_at_once(tmp_path, study_name):
    """open_storage and run close their locks in `finally`: the file must be free then, not when collected."""
    lock = shared_lock(f"sqlite:///{tmp_path / 'x.db'}", study_name)
    lock.acquire()
    assert lock.path == tmp_path / "x-files" / "locks" / f"{'storage' if study_name is None else slug(study_name)}.lock"
    assert not free_for_another_process(lock.path)
    lock.close()
    assert free_for_another_process(lock.path)


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


def test_a_run_leaves_the_storage_and_one_folder_of_side_files(write_study, tmp_path):
    run(load_spec(write_study(budget={"epochs": 1, "trials": 2})), "sqlite:///x.db", RunOptions(device="cpu"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "study.yaml") == ["x-files", "x.db"]
    assert {p.name for p in (tmp_path / "x-files").iterdir()} <= {"locks", "checkpoints", "artifacts", "logs"}


def test_a_study_stored_with_a_folder_per_kind_keeps_its_weights_and_checkpoints(write_study, tmp_path):
    """Earlier versions kept x-artifacts/ and x-checkpoints/ beside x.db: where they exist, they are used."""
    from hpsearch.results.artifacts import artifact_dir, load_trial_state_dict
    from hpsearch.storage import checkpoint_root

    (tmp_path / "x-artifacts").mkdir()
    (tmp_path / "x-checkpoints").mkdir()
    study = run(load_spec(write_study(budget={"epochs": 1, "trials": 1})), "sqlite:///x.db", RunOptions(device="cpu"))
    assert artifact_dir("sqlite:///x.db").as_posix() == "x-artifacts"
    assert checkpoint_root("sqlite:///x.db").as_posix() == "x-checkpoints"
    assert len(list((tmp_path / "x-artifacts").iterdir())) == 1
    assert load_trial_state_dict("sqlite:///x.db", study.study_name)  # the kept weights load


def test_the_storage_is_the_option_else_the_environment_else_hpsearch_db_here(monkeypatch):
    assert storage_url(None) == "sqlite:///hpsearch.db"
    monkeypatch.setenv("HPSEARCH_STORAGE", "postgresql://db/hp")
    assert storage_url(None) == "postgresql://db/hp" and storage_url("sqlite:///x.db") == "sqlite:///x.db"


def test_side_files_go_beside_an_sqlite_file_and_where_the_environment_says_for_a_server(tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_LOGS", "/srv/logs")
    assert folder_beside(f"sqlite:///{tmp_path}/x.db", "logs", "HPSEARCH_LOGS") == tmp_path / "x-files" / "logs"
    assert folder_beside("postgresql://u:p@db/hp", "logs", "HPSEARCH_LOGS").as_posix() == "/srv/logs"
    assert folder_beside("postgresql://u:p@db/hp", "locks").as_posix() == "hpsearch-files/locks"
    assert sqlite_file("sqlite:///:memory:") is None and sqlite_file("sqlite:///a/b.db").as_posix() == "a/b.db"


def test_processes_of_one_sqlite_storage_share_a_lock_file_per_study():
    lock = shared_lock("sqlite:///runs/x.db", "a/b")
    assert isinstance(lock, FileLock) and lock.path.as_posix() == f"runs/x-files/locks/{slug('a/b')}.lock"
    lock.acquire()
    lock.acquire()  # held already: nothing happens
    assert lock.path.is_file()
    lock.close()
    lock.release()  # free already: nothing happens
    assert type(shared_lock("mysql://db/hp")) is NoLock


def test_a_failed_trial_s_copy_keeps_what_to_run_not_how_it_went_and_stops_after_three_retries():
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL, params={"lr": 0.1}, distributions={"lr": FloatDistribution(0.01, 0.2)},
        intermediate_values={1: 0.5}, user_attrs={"baseline": "seed002-fc", "failure": "worker lost", "epochs": 1}))
    for _ in range(MAX_RETRIES + 1):
        queue_retry(study, study.trials[-1])
    copies = study.trials[1:]
    assert len(copies) == MAX_RETRIES and all(t.state == TrialState.WAITING for t in copies)
    assert all(t.params == {"lr": 0.1} and t.intermediate_values == {1: 0.5} for t in copies)
    assert all(t.user_attrs == {"baseline": "seed002-fc"} for t in copies)
    assert [t.system_attrs["failed_trial"] for t in copies] == [0, 0, 0]
    assert copies[-1].system_attrs["retry_history"] == [0, 1, 2]
    stored = study.get_trials(deepcopy=False)[-1]
    queue_retry(study, stored)
    assert stored.system_attrs["retry_history"] == [0, 1, 2]  # the study's own trial, left as it was
