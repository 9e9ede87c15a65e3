"""results/status.py: what `hpsearch status` reads of a study, on studies built in the test (Optuna's own API), and
that it reads in a number of queries that does not grow with the study."""

from __future__ import annotations

import contextlib
import time
import warnings

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState, create_trial

from hpsearch.record import keys as A
from hpsearch.results.status import StatusReader, lines
from hpsearch.storage import open_storage
from tests.helpers import needs_postgres


def study_of(url: str, finished: int) -> optuna.Study:
    """A study hpsearch could have made: `finished` completed trials, one failed (#finished) whose copy is queued
    (#finished + 2), and one running (#finished + 1) on a worker with a heartbeat of 1 s (then silent)."""
    storage = open_storage(url, heartbeat=1)
    study = optuna.create_study(study_name="status-digits", storage=storage, direction="maximize")
    study.set_user_attr(A.STUDY_DATASET, "digits")
    study.set_user_attr(A.STUDY_EPOCHS, 10)
    study.add_trials([create_trial(value=0.5 + i / (2 * finished), intermediate_values={1: 0.4},
                                   user_attrs={A.CONFIG: {"lr": 0.1}, A.EPOCHS_TRAINED: 10, A.RUN: "earlier"})
                      for i in range(finished)])
    failed = create_trial(state=TrialState.FAIL, intermediate_values={1: 0.3, 2: 0.4, 3: 0.5},
                          user_attrs={A.FAILURE: "worker lost", A.RUN: "earlier"})
    study.add_trial(failed)
    with warnings.catch_warnings():  # Optuna's note that heartbeats are meant for Study.optimize
        warnings.simplefilter("ignore")
        running = study.ask()
    for key, value in ((A.WORKER, "node7:4242"), (A.RUN, "abcdef0123"), (A.CONFIG, {"lr": 0.1}),
                       (A.SLURM, {"job_id": 31, "array_job_id": 30, "array_task_id": 1, "restart_count": 1})):
        running.set_user_attr(key, value)
    running.report(0.6, 1)
    running.report(0.7, 2)
    storage.record_heartbeat(running._trial_id)
    study.enqueue_trial({})  # as a lost trial's copy is queued (retries.queue_retry)
    copy = study.get_trials(deepcopy=False)[-1]
    storage.set_trial_system_attr(copy._trial_id, "retry_history", [finished])
    return study


def test_status_names_the_running_queued_and_stale_trials_and_counts_the_rest(tmp_path):
    url = f"sqlite:///{tmp_path / 'status.db'}"
    study_of(url, 5)
    reader = StatusReader(url, "status-digits")
    fresh = reader.read()
    assert fresh.counts == {"complete": 5, "pruned": 0, "fail": 1, "running": 1, "waiting": 1}
    (running,) = fresh.running
    assert (running.number, running.epoch, running.epochs, running.val, running.worker) == (6, 2, 10, 0.7,
                                                                                             "node7:4242")
    assert running.slurm == "30_1 (start 2)" and not running.stale
    (queued,) = fresh.queued
    assert (queued.number, queued.copy_of) == (7, 5)
    time.sleep(3.5)  # over two heartbeats of 1 s on a clock SQLite reads to the second
    text = "\n".join(lines(reader.read(heartbeat=1)))
    assert text.startswith("study status-digits on sqlite:///")
    assert "5 finished (5 complete, 0 pruned), 1 failed, 1 running, 1 queued" in text
    assert "trial #6: epoch 2/10 val 0.7000 on node7:4242 (SLURM task 30_1 (start 2))" in text
    assert "(stale)" in text and "stale: #6 sent no heartbeat" in text
    assert "trial #7: copy of #5" in text


@pytest.mark.parametrize("url", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_status_reads_a_study_in_as_many_queries_whatever_its_size(tmp_path, url):
    """A study of 8,000 trials answers in under a second only if a reading does not grow with it: counted in
    queries here (a timing on a shared machine would say little)."""
    from tests.e2e.test_races import empty_postgres_database

    counts = []
    for size in (10, 200):
        with (contextlib.nullcontext(f"sqlite:///{tmp_path / f'{size}.db'}") if url == "sqlite"
              else empty_postgres_database()) as where:
            study_of(where, size)
            reader = StatusReader(where, "status-digits")
            statements: list[str] = []
            sqlalchemy.event.listen(reader.storage.engine, "before_cursor_execute",
                                    lambda *args, into=statements: into.append(args[2]))
            status = reader.read()
            assert status.counts["complete"] == size
            counts.append(len(statements))
    assert counts[0] == counts[1] <= 12, counts
