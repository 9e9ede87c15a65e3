"""Many workers on one study, --until, crash safety and bad storages: real processes, real databases.

The PostgreSQL tests need a running server named by $HPSEARCH_TEST_POSTGRES (.ci/run starts one
from Debian's packages); without it they are skipped with that reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hpsearch.paths import slug
from hpsearch.search.run import RunOptions, run
from hpsearch.storage import mask
from hpsearch.studyfile.schema import load_spec

POSTGRES = os.environ.get("HPSEARCH_TEST_POSTGRES")
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="set HPSEARCH_TEST_POSTGRES to a PostgreSQL URL "
                                                          "(.ci/run starts a server and sets it)")
# Slow enough per epoch to be caught mid-trial, still seconds in all.
SLOW = {"fixed": {"blocks": 1, "convs_per_block": 2, "width": 32, "batch_size": 16, "batchnorm": False,
                  "optimizer": "sgd_nesterov"},
        "space": {"lr": {"float": [0.01, 0.1], "log": True}}}


def _as_a_foreground_job() -> None:
    """Ctrl-C reaches the command: a suite started in the background by a shell without job control
    (`cmd &`, as some CI runners and nohup wrappers do) inherits SIGINT ignored, which survives exec,
    and hpsearch, like any well-behaved program, leaves an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def hpsearch(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hpsearch", *args], preexec_fn=_as_a_foreground_job,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def load(storage: str, name: str = "tiny-digits") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def assert_exact_total(study: optuna.Study, total: int) -> None:
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials].count(TrialState.FAIL) == 0, [t.user_attrs.get("failure") for t in trials]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len(trials) == total
    assert sorted(t.number for t in trials) == list(range(total))


def test_until_tops_the_study_up_to_a_total(write_study, storage):
    spec = load_spec(write_study(budget={"epochs": 1, "trials": 50}))
    run(spec, storage, RunOptions(device="cpu", n_trials=2))
    assert len(run(spec, storage, RunOptions(device="cpu", until=5)).trials) == 5
    assert len(run(spec, storage, RunOptions(device="cpu", until=4)).trials) == 5  # already there: nothing added


def test_four_workers_on_sqlite_reach_exactly_the_total(write_study, storage):
    path = write_study(budget={"epochs": 2, "trials": 50})
    code, out, err = finish(hpsearch("run", "--study", str(path), "--storage", storage, "--device", "cpu",
                                     "--workers", "4", "--until", "8"))
    assert code == 0, err
    assert "database is locked" not in err and "Traceback" not in err
    assert "4 workers on cpu" in err and "[8/8] w" in err
    study = load(storage)
    assert_exact_total(study, 8)
    assert len({t.user_attrs["worker"] for t in study.trials}) >= 2  # the work really was shared


@needs_postgres
def test_four_workers_on_postgresql_reach_exactly_the_total(write_study):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    path = write_study(name=name, budget={"epochs": 2, "trials": 50})
    try:
        code, _, err = finish(hpsearch("run", "--study", str(path), "--storage", POSTGRES, "--device", "cpu",
                                       "--workers", "4", "--n-trials", "8"))
        assert code == 0, err
        assert_exact_total(load(POSTGRES, name), 8)
        assert mask(POSTGRES) in err and (mask(POSTGRES) == POSTGRES or POSTGRES not in err)
    finally:
        optuna.delete_study(study_name=name, storage=POSTGRES)


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


def first_epochs_done(process: subprocess.Popen, storage: str, trials: int = 1):
    """A condition for wait_for: the first `trials` trials have each reported an epoch."""

    def done() -> bool:
        assert process.poll() is None, process.communicate()
        try:
            started = load(storage).trials
            return len(started) >= trials and all(t.intermediate_values for t in started[:trials])
        except KeyError:
            return False

    return done


@pytest.mark.parametrize("sig, status, reason", [(signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                                 (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_records_the_trial_and_the_next_run_resumes_it(write_study, storage, sig, status, reason):
    # 20 epochs: the signal must land inside a trial even when a quiet machine trains one in a second
    path = write_study(budget={"epochs": 20, "trials": 3}, **SLOW)
    process = hpsearch("run", "--study", str(path), "--storage", storage, "--device", "cpu")
    wait_for(first_epochs_done(process, storage))
    process.send_signal(sig)
    code, _, err = finish(process)
    assert code == status and "Traceback" not in err, err
    assert f"{reason}: run the same command again to resume the study" in err
    trials = load(storage).trials
    assert TrialState.RUNNING not in [t.state for t in trials]
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["failure"].startswith(reason)
    assert trials[-1].state == TrialState.WAITING and trials[-1].params == trials[0].params

    study = run(load_spec(path), storage, RunOptions(device="cpu", n_trials=1))
    resumed = study.trials[len(trials) - 1]
    assert resumed.state == TrialState.COMPLETE and resumed.user_attrs["resumed_from_epoch"] >= 1


def test_sigterm_reaches_every_worker_and_each_queues_its_trial(write_study, storage):
    path = write_study(budget={"epochs": 20, "trials": 4}, **SLOW)
    process = hpsearch("run", "--study", str(path), "--storage", storage, "--device", "cpu", "--workers", "2")
    wait_for(first_epochs_done(process, storage, trials=2))
    process.send_signal(signal.SIGTERM)  # to the parent only, as `timeout` or Kubernetes would
    code, _, err = finish(process)
    assert code == 143 and "Traceback" not in err, err
    assert "terminated (SIGTERM): run the same command again" in err
    trials = load(storage).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert TrialState.RUNNING not in [t.state for t in trials]  # no worker was killed: each recorded its trial
    assert failed and all(t.user_attrs["failure"].startswith("terminated (SIGTERM)") for t in failed)
    assert sorted(t.system_attrs["failed_trial"] for t in waiting) == sorted(t.number for t in failed)

    study = run(load_spec(path), storage, RunOptions(device="cpu", n_trials=2))
    for copy in waiting:
        resumed, stopped = study.trials[copy.number], study.trials[copy.system_attrs["failed_trial"]]
        assert resumed.state == TrialState.COMPLETE
        if stopped.intermediate_values:  # stopped after an epoch, not while starting: resumed from its checkpoint
            assert resumed.user_attrs["resumed_from_epoch"] == max(stopped.intermediate_values)


def test_workers_pinned_to_gpus_need_gpus(write_study):
    code, _, err = finish(hpsearch("run", "--study", str(write_study()), "--device", "cpu", "--gpus", "0,1"))
    assert code == 2 and "Traceback" not in err and "--gpus/--trials-per-gpu need --device cuda" in err


def test_n_trials_and_until_together_is_a_usage_error(write_study):
    code, _, err = finish(hpsearch("run", "--study", str(write_study()), "--n-trials", "2", "--until", "3"))
    assert code == 2 and "not both" in err and "Traceback" not in err


@pytest.mark.parametrize("url, fragment", [
    ("postgresql://alice:s3cret@127.0.0.1:1/nowhere", "cannot open storage postgresql://alice:***@127.0.0.1:1/"),
    ("sqlite:////proc/no/such/dir/x.db", "cannot write the SQLite storage"),
])
def test_bad_storage_is_one_line_and_never_shows_the_password(write_study, url, fragment):
    code, out, err = finish(hpsearch("run", "--study", str(write_study()), "--storage", url, "--workers", "2"))
    assert code == 2 and fragment in err and "s3cret" not in out + err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@needs_postgres
def test_wrong_postgresql_password_is_one_masked_line(write_study):
    wrong = sqlalchemy.engine.make_url(POSTGRES).set(password="not-the-password").render_as_string(False)
    code, _, err = finish(hpsearch("run", "--study", str(write_study()), "--storage", wrong))
    assert code == 2 and "not-the-password" not in err and "Traceback" not in err
    assert "cannot open storage" in err and "password authentication failed" in err


@pytest.mark.parametrize("made_for", ["minimize", "another dataset"])
def test_a_same_named_study_made_for_something_else_is_refused_untouched(write_study, storage, made_for):
    if made_for == "minimize":
        optuna.create_study(study_name="tiny-digits", storage=storage, direction="minimize")
    else:
        run(load_spec(write_study()), storage, RunOptions(device="cpu", n_trials=1))
    before = len(load(storage).trials)
    path = write_study("other.yaml", **({} if made_for == "minimize" else {"dataset": {"name": "fashion-mnist"}}))
    code, _, err = finish(hpsearch("run", "--study", str(path), "--storage", storage, "--device", "cpu"))
    assert code == 2 and "Traceback" not in err and "rename the study" in err, err
    assert len(load(storage).trials) == before


def test_mask_hides_every_password():
    assert mask("postgresql+psycopg2://bob:pa:ss@db.example:5432/hp") == "postgresql+psycopg2://bob:***@db.example:5432/hp"
    assert mask("sqlite:///hpsearch.db") == "sqlite:///hpsearch.db"
