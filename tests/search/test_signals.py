"""Ctrl-C and SIGTERM raise only outside the database layer, and a run stopped by one records its trial so the
next run resumes it: real signals, a real SQLite storage, a real process."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hpsearch.errors import Terminated
from hpsearch.search.run import RunOptions, run
from hpsearch.search.signals import RAISING_S, REDELIVER_S, hold_signals, raising_on_signals
from hpsearch.studyfile.schema import load_spec
from tests.helpers import SLOW, finish, first_epochs_done, hpsearch, load, wait_for


def sigterm_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    return timer


def can_write_at_once(db: str) -> bool:
    """Whether another process could commit now, or would wait for a lock this one still holds."""
    other = sqlite3.connect(db, timeout=0.2, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        other.execute("COMMIT")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


def test_a_signal_during_storage_reads_leaves_no_lock_and_a_working_storage(tmp_path):
    """Raised mid-query, the interrupt kept a half-read cursor (and its SQLite lock) alive in its traceback
    in about one case in ten: a run's workers then waited on the lock past their grace and were killed
    with their trials RUNNING. Sixty signals at random moments of a polling loop, as `run --workers` polls."""
    db = str(tmp_path / "signals.db")
    study = optuna.create_study(study_name="polled", storage=f"sqlite:///{db}", direction="maximize")
    for value in range(40):
        trial = study.ask()
        trial.suggest_float("lr", 1e-3, 1.0, log=True)
        trial.set_user_attr("note", "x" * 50)
        trial.report(value / 40, 1)
        study.tell(trial, value / 40)
    rng = random.Random(0)
    for attempt in range(60):  # a block each, as each command stopped by a signal has its own
        with raising_on_signals():
            sigterm_after(rng.uniform(0.0005, 0.02))
            deadline = time.monotonic() + 30  # the loop ends with the signal; the margin is for a loaded machine,
            # where a timer firing after the deadline would raise outside pytest.raises and end the whole session
            with pytest.raises(Terminated):
                while time.monotonic() < deadline:
                    study.get_trials(deepcopy=False)
                    time.sleep(0.01)  # between polls, where the put-off signal is raised
        assert can_write_at_once(db), f"signal {attempt}: a lock outlived the interrupted query"
        study.set_user_attr("attempt", attempt)  # the interrupted process's own session still works
    assert study.user_attrs["attempt"] == 59 and len(study.get_trials()) == 40


def test_a_signal_put_off_past_the_end_is_raised_there_not_lost(tmp_path):
    """A SIGTERM that arrives during the last query is raised when the block ends, and never reaches the
    handler put back afterwards (here the default one, which would end the test process)."""
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'slow.db'}")
    slow = sqlalchemy.text("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) "
                           "SELECT count(*) FROM c")
    with engine.connect() as connection:
        started = time.monotonic()
        with pytest.raises(Terminated):
            with raising_on_signals():
                sigterm_after(0.02)
                assert connection.execute(slow).scalar() == 2000000
    assert time.monotonic() - started > 0.02 + REDELIVER_S / 2  # the query outlasted the signal: it was put off
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    time.sleep(3 * REDELIVER_S)  # nothing is delivered late


def test_a_second_signal_as_the_clean_up_begins_is_put_off_and_dropped_once_signals_are_held():
    """A worker under SLURM hears SIGTERM twice within milliseconds (from SLURM and from its batch script).
    Python runs a handler at its next check, which may be the first call of the `except` that records the
    trial: raised there, the second interrupt skipped the record (the trial failed with no reason, about one
    preemption in five). It is put off instead, and dropped once the clean-up holds signals."""
    recorded = []
    with pytest.raises(Terminated):
        with raising_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the first is raised here
            except KeyboardInterrupt:
                os.kill(os.getpid(), signal.SIGTERM)  # the second, as the clean-up begins
                hold_signals()
                recorded.append("the trial's failure")
                raise
    assert recorded == ["the trial's failure"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    time.sleep(RAISING_S + 3 * REDELIVER_S)  # nothing is delivered late


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
