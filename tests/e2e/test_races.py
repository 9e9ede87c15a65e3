"""Processes that meet on one storage: opening it together, drawing parameters, losing a worker.

Real processes on real databases; the PostgreSQL tests need $HPSEARCH_TEST_POSTGRES (see
tests/helpers.py) and each gets an empty schema of its own, as a new database would be.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hpsearch.storage import driver_url
from tests.helpers import POSTGRES, SLOW, assert_exact_total, finish, load, needs_postgres, trial_in_training, wait_for


@contextmanager
def empty_postgres_database():
    """A URL whose tables live in a new, empty schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(driver_url(POSTGRES), poolclass=sqlalchemy.pool.NullPool)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def start(args: list[str], storage: str) -> subprocess.Popen:
    """hpsearch with the storage in the environment, as on a machine where a worker is started."""
    env = {**os.environ, "HPSEARCH_STORAGE": storage}
    return subprocess.Popen([sys.executable, "-m", "hpsearch", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from hpsearch.storage import open_storage
Path(sys.argv[2]).touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.005)
open_storage(sys.argv[1])
"""


def open_together(url: str, folder: Path, processes: int) -> list[tuple[int, str]]:
    """Start processes that each import hpsearch, then open `url` at the same moment; their codes and stderr."""
    go = folder / "go"
    ready = [folder / f"ready-{i}" for i in range(processes)]
    started = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, url, str(r), str(go)], stderr=subprocess.PIPE,
                                text=True) for r in ready]
    wait_for(lambda: all(r.exists() for r in ready))
    go.touch()
    results = [(p.wait(timeout=120), p.stderr.read()) for p in started]
    go.unlink()
    for r in ready:
        r.unlink()
    return results


def test_processes_opening_a_new_sqlite_file_together_all_succeed(tmp_path):
    for attempt in range(3):
        results = open_together(f"sqlite:///{tmp_path / f'new-{attempt}.db'}", tmp_path, 8)
        assert [code for code, _ in results] == [0] * 8, "\n".join(err for _, err in results if err)
    assert optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'new-0.db'}") == []  # a sound, empty storage


@needs_postgres
def test_processes_opening_an_empty_postgresql_database_together_all_succeed(tmp_path):
    for _ in range(2):
        with empty_postgres_database() as url:
            results = open_together(url, tmp_path, 6)
            assert [code for code, _ in results] == [0] * 6, "\n".join(err for _, err in results if err)


@needs_postgres
def test_three_workers_started_together_on_an_empty_database_never_repeat_a_trial(write_study):
    path = write_study(budget={"epochs": 1, "trials": 50})
    with empty_postgres_database() as url:
        workers = [start(["worker", "--study", str(path), "--device", "cpu", "--until", "6"], url) for _ in range(3)]
        results = [finish(w) for w in workers]
        assert [code for code, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
        study = load(url)
        assert_exact_total(study, 6)
        drawn = [tuple(sorted(t.params.items())) for t in study.trials]
        assert len(set(drawn)) == 6, drawn  # the same seed in every worker, yet no two draws alike
        best = [start(["best", "--study", str(path)], url) for _ in range(4)]
        assert [finish(b)[0] for b in best] == [0] * 4


@pytest.mark.parametrize("total", [["--until", "3"], ["--n-trials", "3", "--run-id", uuid.uuid4().hex]],
                         ids=["until", "one-run"])
def test_a_worker_lost_mid_trial_has_its_copy_run_before_the_total_is_reached(write_study, tmp_path, total):
    """Two workers, one killed mid-trial while the other counts. Until the study holds 3 finished
    trials, or in one run (as `run --workers` starts them) of 3 trials, the other must not stop
    while that trial is unresolved: it fails it, saying why, and runs its copy from the checkpoint."""
    storage = f"sqlite:///{tmp_path / 'lost.db'}"
    path = write_study(budget={"epochs": 4, "trials": 3}, **SLOW)
    args = ["worker", "--study", str(path), "--device", "cpu", "--heartbeat", "1", *total]
    victim, survivor = start(args, storage), start(args, storage)
    wait_for(lambda: trial_in_training(victim, storage) and trial_in_training(survivor, storage))
    lost_number = trial_in_training(victim, storage).number
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    code, _, err = finish(survivor)
    assert code == 0, err
    trials = load(storage).trials
    lost = trials[lost_number]
    assert lost.state == TrialState.FAIL and lost.user_attrs["failure"].startswith("worker lost: no heartbeat from")
    assert lost.user_attrs["epochs"] == max(lost.intermediate_values) >= 1
    (copy,) = [t for t in trials if t.system_attrs.get("failed_trial") == lost_number]
    assert copy.state == TrialState.COMPLETE and copy.params == lost.params and "failure" not in copy.user_attrs
    assert copy.user_attrs["resumed_from_epoch"] >= 1
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 3  # 3 trials, all resolved
    assert TrialState.RUNNING not in [t.state for t in trials] and TrialState.WAITING not in [t.state for t in trials]
