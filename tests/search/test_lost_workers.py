"""A worker killed outright (SIGKILL: the out-of-memory killer, kill -9) records nothing: its run recovers its trial
at once, and the copy says which trial it continues and from which epoch. Real processes, real kills."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket

import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from hpsearch.record import keys as A
from hpsearch.cli import main
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.schema import load_spec
from tests.helpers import SLOW, finish, hpsearch, load, needs_postgres, trial_in_training, wait_for
from tests.search.test_run import InterruptAfterEpoch


def test_a_resumed_copy_says_in_one_line_which_trial_it_continues_and_from_which_epoch(write_study, storage):
    path = write_study(budget={"epochs": 3, "trials": 2})
    with pytest.raises(KeyboardInterrupt):
        run(load_spec(path), storage, RunOptions(device="cpu"), events=InterruptAfterEpoch(0, 2))
    again = CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu",
                                      "--n-trials", "1"])
    assert again.exit_code == 0, again.output
    said = [line for line in again.stderr.splitlines() if "resumed from its checkpoint" in line]
    assert said == ["trial #1, copy of #0, resumed from its checkpoint at epoch 3 of 3"], again.stderr


@pytest.mark.parametrize("where", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_a_worker_killed_outright_is_recovered_by_its_run_and_its_copy_resumed(write_study, tmp_path, where):
    from tests.e2e.test_races import empty_postgres_database

    path = write_study(budget={"epochs": 6, "trials": 2}, **SLOW)
    with (contextlib.nullcontext(f"sqlite:///{tmp_path / 'study.db'}") if where == "sqlite"
          else empty_postgres_database()) as storage:
        parent = hpsearch("run", "--study", str(path), "--storage", storage, "--device", "cpu", "--workers", "2",
                          "--no-stop-at-target")

        def victim() -> int | None:
            """The worker pid of a trial that has reported an epoch, once there is one."""
            try:
                trials = load(storage).trials
            except KeyError:
                return None
            assert parent.poll() is None, parent.communicate()
            running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
            return int(running[0].user_attrs[A.WORKER].rpartition(":")[2]) if running else None

        wait_for(lambda: victim() is not None, timeout=300)
        pid = victim()
        os.kill(pid, signal.SIGKILL)
        code, _, err = finish(parent, timeout=600)
        assert code == 0, err
        study = load(storage)
        lost = [t for t in study.trials if t.state == TrialState.FAIL]
        assert len(lost) == 1 and lost[0].user_attrs[A.FAILURE].startswith(
            "worker lost: worker ") and f":{pid}) was killed by SIGKILL" in lost[0].user_attrs[A.FAILURE]
        assert re.search(rf"worker \d \([^)]*:{pid}\) was killed by SIGKILL: trial #{lost[0].number} failed "
                         rf"\(worker lost\), its copy #\d+ runs next; worker \d started again \(1 of at most 3\)", err)
        copy = next(t for t in study.trials if t.system_attrs.get("retry_history") == [lost[0].number])
        assert copy.state == TrialState.COMPLETE and copy.user_attrs[A.RESUMED_FROM_EPOCH] >= 1
        finished = [t for t in study.trials if t.state != TrialState.FAIL]
        assert len(finished) == 2 and all(t.state == TrialState.COMPLETE for t in finished)


def test_a_lone_worker_killed_outright_is_failed_by_a_living_worker_at_its_next_epoch_end(write_study, tmp_path):
    """Two `hpsearch worker`s, as on two machines: nothing but its heartbeat shows the killed one gone. The
    survivor, mid-trial, fails its trial as worker lost and queues the copy at an epoch end once the heartbeat is
    two intervals old, rather than after its own long trial."""
    storage = f"sqlite:///{tmp_path / 'lone.db'}"
    path = write_study(budget={"epochs": 60, "trials": 2}, **SLOW)
    args = ("worker", "--study", str(path), "--storage", storage, "--device", "cpu", "--heartbeat", "1",
            "--until", "2")
    victim, survivor = hpsearch(*args), hpsearch(*args)
    wait_for(lambda: trial_in_training(victim, storage) and trial_in_training(survivor, storage), timeout=300)
    lost, busy = trial_in_training(victim, storage).number, trial_in_training(survivor, storage).number
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    wait_for(lambda: load(storage).trials[lost].state == TrialState.FAIL, timeout=120)
    trials = load(storage).trials
    assert trials[busy].state == TrialState.RUNNING  # the survivor is still in its own trial
    assert trials[lost].user_attrs[A.FAILURE].startswith(f"worker lost: no heartbeat from {socket.gethostname()}:"
                                                         f"{victim.pid} for over 2 s")
    (copy,) = [t for t in trials if t.system_attrs.get("retry_history") == [lost]]
    assert copy.state == TrialState.WAITING
    survivor.send_signal(signal.SIGTERM)  # its own trial stops too, its copy queued: what a cluster's stop does
    assert finish(survivor)[0] == 128 + signal.SIGTERM
