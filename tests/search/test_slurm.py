"""`hpsearch submit`: the batch script and what it refuses, in-process; then real job arrays on a real SLURM.

The array tests need a running cluster whose partition $HPSEARCH_TEST_SLURM names (.ci/slurm-up starts a
one-node one on localhost), and submit as the user running the tests. Tasks run on this machine, so their
folders are this test's: every submission says --one-node.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from hpsearch import trialrecord as A
from hpsearch.cli import main
from hpsearch.search.workers import Workers, WorkerSlot
from tests.e2e.test_races import empty_postgres_database
from tests.helpers import SLOW, assert_exact_total, load, needs_postgres, wait_for

PARTITION = os.environ.get("HPSEARCH_TEST_SLURM")
needs_slurm = pytest.mark.skipif(not PARTITION or not shutil.which("sbatch"),
                                 reason="set HPSEARCH_TEST_SLURM to a SLURM partition (.ci/slurm-up starts one)")
SERVER = "postgresql://hpsearch:s3cret-pw@db-host:5432/hpsearch"


def submit(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["submit", *args], env=env)


def refused(result, *fragments: str) -> str:
    """The one error line of a refused submission, which holds every fragment and no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1, result.output
    assert all(f in result.output for f in fragments), result.output
    return result.output


def test_dry_run_prints_a_readable_script_without_the_storage(write_study, tmp_path):
    path = write_study()
    result = submit("--study", str(path), "--jobs", "3", "--until", "12", "--time", "02:00:00", "--partition", "gpu",
                    "--sbatch-arg=--cpus-per-task=4", "--dry-run",
                    env={"HPSEARCH_STORAGE": SERVER, "HPSEARCH_CHECKPOINTS": "/shared/hpsearch/checkpoints"})
    assert result.exit_code == 0, result.output
    script = result.output
    for line in ("#SBATCH --array=0-2", "#SBATCH --requeue", "#SBATCH --signal=B:USR1@120",
                 "#SBATCH --open-mode=append", "#SBATCH --time=02:00:00", "#SBATCH --partition=gpu",
                 "#SBATCH --cpus-per-task=4", f"#SBATCH --chdir={tmp_path}"):
        assert line in script.splitlines()
    assert f"-m hpsearch run --study {path} --run-id " in script and "--device cpu --until 12 &" in script
    assert "/shared/hpsearch/checkpoints" in script
    assert "s3cret" not in script and "db-host" not in script  # the URL travels in the environment only
    completed = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert completed.returncode == 0, completed.stderr


def test_gpus_per_job_asks_for_gpus_and_runs_workers_per_gpu(write_study):
    result = submit("--study", str(write_study()), "--jobs", "2", "--gpus-per-job", "4", "--trials-per-gpu", "2",
                    "--dry-run", env={"HPSEARCH_STORAGE": SERVER, "HPSEARCH_CHECKPOINTS": "/shared/checkpoints"})
    assert result.exit_code == 0, result.output
    assert "#SBATCH --gres=gpu:4" in result.output.splitlines()
    assert "--device cuda --trials-per-gpu 2" in result.output


def test_sqlite_is_refused_unless_every_task_runs_on_one_node(write_study, storage):
    refused(submit("--study", str(write_study()), "--storage", storage, "--jobs", "2", "--dry-run"),
            "SQLite", "PostgreSQL", "--one-node")
    assert submit("--study", str(write_study()), "--storage", storage, "--jobs", "2", "--dry-run",
                  "--one-node").exit_code == 0


@pytest.mark.parametrize("checkpoints", [None, "/tmp/checkpoints", "/dev/shm/checkpoints"])  # /dev/shm: tmpfs
def test_a_checkpoint_folder_other_nodes_cannot_see_is_refused(write_study, checkpoints):
    env = {"HPSEARCH_STORAGE": SERVER, "HPSEARCH_CHECKPOINTS": checkpoints}
    refused(submit("--study", str(write_study()), "--jobs", "2", "--dry-run", env=env),
            "$HPSEARCH_CHECKPOINTS", "every node")


def test_a_password_on_the_command_line_is_refused_and_never_shown(write_study):
    out = refused(submit("--study", str(write_study()), "--storage", SERVER, "--jobs", "2", "--dry-run",
                         env={"HPSEARCH_CHECKPOINTS": "/shared/checkpoints"}), "HPSEARCH_STORAGE")
    assert "s3cret" not in out


@pytest.mark.parametrize("limit, fragment", [("00:03:59", "at least 4 minutes"), ("2h", "HH:MM:SS")])
def test_a_time_limit_too_short_to_be_warned_of_or_unreadable_is_refused(write_study, storage, limit, fragment):
    refused(submit("--study", str(write_study()), "--storage", storage, "--jobs", "1", "--one-node",
                   "--time", limit, "--dry-run"), fragment)


def test_without_sbatch_one_line_says_where_to_submit_from(write_study, storage, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    refused(submit("--study", str(write_study()), "--storage", storage, "--jobs", "1", "--one-node",
                   env={"PATH": str(empty)}), "sbatch", "--dry-run")


def test_a_task_given_some_gpus_pins_its_workers_to_those(monkeypatch, storage):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # what SLURM sets for a job given GPUs 2 and 3
    show = [sys.executable, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"]
    workers = Workers("pinned", storage, "run", [WorkerSlot("cuda", 0), WorkerSlot("cuda", 1)], lambda slot: show)
    assert [p.wait() for p in workers.processes] == [0, 0]
    assert [(workers.log_dir / f"worker-{i}.log").read_text() for i in (0, 1)] == ["2\n", "3\n"]


# Real arrays ----------------------------------------------------------------------------------------


def submitted(*args: str, env: dict[str, str] | None = None) -> str:
    """Submit with the real sbatch; the job id it printed."""
    result = submit("--partition", PARTITION, "--one-node", *args, env=env)
    assert result.exit_code == 0, result.output
    return re.search(r"submitted job (\d+)", result.output)[1]


def job_states(job: str) -> list[str]:
    """The states of the array's tasks as squeue lists them (none once all have ended)."""
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout
    return out.split()


def wait_until_ended(job: str, timeout: float = 150) -> None:
    wait_for(lambda: not job_states(job), timeout)


def logs(folder: Path) -> str:
    """Every task log under `folder`, for a failed assertion's message."""
    return "\n".join(p.read_text() for p in sorted(folder.rglob("*.log")))


@needs_slurm
def test_an_array_of_workers_reaches_exactly_the_total(write_study, tmp_path):
    path = write_study(budget={"epochs": 2, "trials": 3})
    storage = f"sqlite:///{tmp_path / 'array.db'}"
    job = submitted("--study", str(path), "--storage", storage, "--jobs", "2", "--until", "6")
    wait_until_ended(job)
    study = load(storage)
    assert len(study.trials) == 6, logs(tmp_path)  # in array-files/logs, beside the SQLite file
    assert_exact_total(study, 6)
    assert {t.user_attrs[A.SLURM]["array_job_id"] for t in study.trials} == {int(job)}
    assert {t.user_attrs[A.SLURM]["array_task_id"] for t in study.trials} <= {0, 1}
    assert len({t.user_attrs[A.RUN] for t in study.trials}) == 1  # one run: the array


@needs_slurm
@needs_postgres
@pytest.mark.parametrize("stop", ["scontrol requeue", "time limit"])
def test_a_preempted_task_comes_back_and_resumes_its_trial(write_study, tmp_path, stop):
    path = write_study(budget={"epochs": 12, "trials": 1}, **SLOW)  # long enough to be stopped mid-trial
    with empty_postgres_database() as storage:
        env = {"HPSEARCH_STORAGE": storage, "HPSEARCH_CHECKPOINTS": str(tmp_path / "shared" / "checkpoints")}
        job = submitted("--study", str(path), "--jobs", "1", "--until", "1", env=env)

        def two_epochs_reported() -> bool:
            try:
                trials = load(storage).trials
            except KeyError:
                return False
            return bool(trials) and len(trials[0].intermediate_values) >= 2

        wait_for(two_epochs_reported)
        task = f"{job}_0"
        if stop == "scontrol requeue":  # what preemption does: SIGTERM to the task, then it is queued again
            subprocess.run(["scontrol", "requeue", task], check=True)
        else:  # what SLURM sends WARN_S before a task's time limit
            subprocess.run(["scancel", "--batch", "--signal=USR1", task], check=True)
        wait_until_ended(job, timeout=180)
        study = load(storage)
        assert len(study.trials) == 2, logs(tmp_path)  # in hpsearch-files/logs: the folder it ran in
        first, copy = study.trials  # exactly the total: the copy and nothing more
        assert first.state == TrialState.FAIL and first.user_attrs[A.FAILURE].startswith("terminated (SIGTERM)")
        assert copy.state == TrialState.COMPLETE and copy.system_attrs["failed_trial"] == 0
        assert copy.params == first.params
        # from the checkpoint of the last epoch reported, or of the next where the signal came between the two
        assert copy.user_attrs[A.RESUMED_FROM_EPOCH] - first.user_attrs[A.EPOCHS] in (0, 1)
        assert first.user_attrs[A.EPOCHS] >= 2
        assert first.user_attrs[A.SLURM]["restart_count"] == 0
        assert copy.user_attrs[A.SLURM] == {**first.user_attrs[A.SLURM], "restart_count": 1}  # the same task, back
        log = logs(tmp_path)
        assert "start 1" in log and "start 2" in log
