"""Several worker processes on one study: the plan, each worker's command line, exact totals on SQLite and
PostgreSQL, a stop passed on to every worker, and the workers' logs beside the storage.

The PostgreSQL tests need a running server named by $HPSEARCH_TEST_POSTGRES (.ci/run starts one
from Debian's packages); without it they are skipped with that reason."""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
import uuid

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from hpsearch.cli import main
from hpsearch.errors import HpsearchError
from hpsearch.paths import slug
from hpsearch.search.run import RunOptions, run
from hpsearch.search.workers import Workers, WorkerSlot, plan_workers, worker_command
from hpsearch.storage import mask
from hpsearch.studyfile.schema import load_spec
from tests.helpers import (
    POSTGRES,
    SLOW,
    assert_exact_total,
    finish,
    first_epochs_done,
    hpsearch,
    invoke,
    load,
    needs_postgres,
    outcome,
    wait_for,
)


def test_four_workers_on_sqlite_reach_exactly_the_total(write_study, storage):
    path = write_study(budget={"epochs": 2, "trials": 50})
    code, out, err = outcome(invoke("run", "--study", str(path), "--storage", storage, "--device", "cpu",
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
        code, _, err = outcome(invoke("run", "--study", str(path), "--storage", POSTGRES, "--device", "cpu",
                                      "--workers", "4", "--n-trials", "8"))
        assert code == 0, err
        assert_exact_total(load(POSTGRES, name), 8)
        assert mask(POSTGRES) in err and (mask(POSTGRES) == POSTGRES or POSTGRES not in err)
    finally:
        optuna.delete_study(study_name=name, storage=POSTGRES)


@pytest.mark.parametrize("to_the_job, status, reason", [(False, 143, "terminated (SIGTERM)"),
                                                        (True, 130, "interrupted (Ctrl-C)")],
                         ids=["sigterm to the parent", "ctrl-c to every process"])
def test_a_stop_reaches_every_worker_and_each_queues_its_trial(write_study, storage, to_the_job, status, reason):
    """SIGTERM to the parent only, as `timeout` or Kubernetes send it; or Ctrl-C as a terminal sends it, to every
    process of the job, which the parent then passes on too: a worker hears it twice, and still stops only after
    its step, recording its trial."""
    path = write_study(budget={"epochs": 20, "trials": 4}, **SLOW)
    process = hpsearch("run", "--study", str(path), "--storage", storage, "--device", "cpu", "--workers", "2",
                       start_new_session=True)
    wait_for(first_epochs_done(process, storage, trials=2))
    if to_the_job:
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    code, _, err = finish(process)
    assert code == status and "Traceback" not in err, err
    assert f"{reason}: run the same command again" in err
    trials = load(storage).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert TrialState.RUNNING not in [t.state for t in trials]  # no worker was killed: each recorded its trial
    assert failed and all(t.user_attrs["failure"].startswith(reason) for t in failed)
    assert sorted(t.system_attrs["failed_trial"] for t in waiting) == sorted(t.number for t in failed)

    study = run(load_spec(path), storage, RunOptions(device="cpu", n_trials=2))
    for copy in waiting:
        resumed, stopped = study.trials[copy.number], study.trials[copy.system_attrs["failed_trial"]]
        assert resumed.state == TrialState.COMPLETE
        if stopped.intermediate_values:  # stopped after an epoch, not while starting: resumed from its checkpoint
            assert resumed.user_attrs["resumed_from_epoch"] == max(stopped.intermediate_values)


def test_workers_pinned_to_gpus_need_gpus(write_study):
    code, _, err = outcome(invoke("run", "--study", str(write_study()), "--device", "cpu", "--gpus", "0,1"))
    assert code == 2 and "Traceback" not in err and "--gpus/--trials-per-gpu need --device cuda" in err


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


def test_gpu_workers_are_refused_where_torch_sees_no_cuda():
    for flags in [((0, 1), None), ((), 2)]:
        with pytest.raises(HpsearchError, match="torch sees no CUDA device.*use --workers N --device cpu"):
            plan_workers(None, *flags, "auto", visible_gpus=0)


def test_workers_are_n_on_one_device_or_k_per_gpu():
    assert plan_workers(3, (), None, "cpu", visible_gpus=0) == [WorkerSlot("cpu", None)] * 3
    assert plan_workers(None, (), None, "auto", visible_gpus=2) == [WorkerSlot("auto", None)]
    assert plan_workers(None, (1, 0), 2, "auto", visible_gpus=2) == [
        WorkerSlot("cuda", 1), WorkerSlot("cuda", 1), WorkerSlot("cuda", 0), WorkerSlot("cuda", 0)]
    assert plan_workers(None, (), 1, "cuda", visible_gpus=3) == [WorkerSlot("cuda", g) for g in range(3)]


@pytest.mark.parametrize("args, says", [
    ((2, (0,), None, "cuda", 1), "--workers cannot be combined with --gpus/--trials-per-gpu"),
    ((None, (2,), None, "cuda", 2), "--gpus 2: only GPUs 0..1 exist here"),
])
def test_a_worker_plan_that_cannot_be_is_refused(args, says):
    with pytest.raises(HpsearchError, match=f"^{re.escape(says)}"):
        plan_workers(*args[:4], visible_gpus=args[4])


def test_a_worker_gets_the_run_s_options_on_its_command_line_and_never_the_storage():
    options = RunOptions(device="cpu", until=8, seed=3, timeout=60, stop_at_target=False, keep_weights=1)
    cmd = worker_command("s.yaml", options, WorkerSlot("cpu", None), "run-1")
    assert cmd[1:] == ["-m", "hpsearch", "worker", "--study", "s.yaml", "--device", "cpu", "--run-id", "run-1",
                       "--until", "8", "--timeout", "60", "--seed", "3", "--keep-weights", "1",
                       "--no-stop-at-target"]  # the heartbeat at its default: left out, as run's own options are
    assert "--n-trials" in worker_command("s.yaml", RunOptions(n_trials=2), WorkerSlot("cuda", 0), "r")
    accepting = worker_command("s.yaml", RunOptions(accept_change=True), WorkerSlot("cpu", None), "r")
    assert accepting[-1] == "--accept-change"


def test_workers_find_the_urls_in_their_environment_and_never_on_their_command_line(storage):
    """What `ps` shows of a worker holds no password: the storage URL and the MLflow URI come in its environment."""
    mlflow = "http://alice:s3cret@tracker:5000"
    cmd = worker_command("s.yaml", RunOptions(mlflow=mlflow), WorkerSlot("cpu", None), "run-1")
    assert cmd[-1] == "--mlflow" and not any("s3cret" in word or "tracker" in word for word in cmd)
    show = [sys.executable, "-c", "import os, sys; print(sys.argv[1:], os.environ['HPSEARCH_STORAGE'], "
            "os.environ['MLFLOW_TRACKING_URI'])", *cmd[3:]]
    workers = Workers("urls", storage, "run", [WorkerSlot("cpu", None)], lambda slot: show, mlflow=mlflow)
    assert [p.wait() for p in workers.processes] == [0]
    said = (workers.log_dir / "worker-0.log").read_text()
    assert said == f"{cmd[3:]} {storage} {mlflow}\n"
