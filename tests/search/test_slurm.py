"""`hpsearch submit`: the batch script and what it refuses, in-process; then real job arrays on a real SLURM.

The array tests need a running cluster whose partition $HPSEARCH_TEST_SLURM names (.ci/slurm-up starts a
one-node one on localhost), and submit as the user running the tests. Tasks run on this machine, so their
folders are this test's: every submission says --one-node.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from hpsearch.record import keys as A
from hpsearch.cli import main
from hpsearch.search.options import RunOptions
from hpsearch.search.workers import Workers, WorkerSlot
from tests.e2e.test_races import empty_postgres_database
from tests.helpers import SLOW, assert_exact_total, load, needs_postgres, wait_for

PARTITION = os.environ.get("HPSEARCH_TEST_SLURM")
needs_slurm = pytest.mark.skipif(not PARTITION or not shutil.which("sbatch"),
                                 reason="set HPSEARCH_TEST_SLURM to a SLURM partition (.ci/slurm-up starts one)")
SERVER = "postgresql://hpsearch:s3cret-pw@db-host:5432/hpsearch"
SHARED = {"HPSEARCH_ARTIFACTS": "/shared/artifacts", "HPSEARCH_LOGS": "/shared/logs"}  # as a cluster's user sets them


def submit(*args: str, env: dict[str, str] | None = None):
    """`hpsearch submit ARGS` in-process, the weights and logs in shared folders unless `env` says otherwise."""
    return CliRunner().invoke(main, ["submit", *args], env={**SHARED, **(env or {})})


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


def test_a_node_local_checkpoint_folder_is_named_on_one_line_whatever_it_holds(write_study):
    env = {"HPSEARCH_STORAGE": SERVER, "HPSEARCH_CHECKPOINTS": "/tmp/c\nerror: forged\x1b[2J"}
    out = refused(submit("--study", str(write_study()), "--jobs", "2", "--dry-run", env=env), "on this node only")
    assert out.startswith("error: $HPSEARCH_CHECKPOINTS=/tmp/c\\nerror: forged\\x1b[2J is on this node only")


@pytest.mark.parametrize("variable, name", [("HPSEARCH_ARTIFACTS", "weights"), ("HPSEARCH_LOGS", "log")])
@pytest.mark.parametrize("given", [None, "/tmp/elsewhere", "/dev/shm/elsewhere"])
def test_a_weights_or_log_folder_other_nodes_cannot_see_is_refused(write_study, variable, name, given):
    """Unset, each defaults to a folder under the current one: here a test's folder under /tmp."""
    env = {"HPSEARCH_STORAGE": SERVER, "HPSEARCH_CHECKPOINTS": "/shared/checkpoints", variable: given}
    out = refused(submit("--study", str(write_study()), "--jobs", "2", "--dry-run", env=env),
                  f"set ${variable} to a folder every node sees", "--one-node")
    assert out.startswith(f"error: ${variable}={given} is on this node only" if given else
                          f"error: the {name} folder /tmp/")
    assert submit("--study", str(write_study()), "--jobs", "2", "--dry-run", "--one-node", env=env).exit_code == 0


def test_submit_passes_every_run_option_to_its_tasks_and_says_what_ends_the_array(write_study, tmp_path):
    """One set of options for run and submit: each reaches the task's `hpsearch run` as given."""
    path = write_study()
    result = submit("--study", str(path), "--jobs", "2", "--n-trials", "9", "--timeout", "600", "--seed", "7",
                    "--data-dir", str(tmp_path / "data"), "--no-stop-at-target", "--heartbeat", "5",
                    "--keep-weights", "1", "--accept-change", "--dry-run",
                    env={"HPSEARCH_STORAGE": SERVER, "HPSEARCH_CHECKPOINTS": "/shared/checkpoints"})
    assert result.exit_code == 0, result.output
    task = next(line for line in result.output.splitlines() if " -m hpsearch run " in line)
    assert task.endswith(f"--device cpu --n-trials 9 --timeout 600.0 --seed 7 --data-dir {tmp_path / 'data'} "
                         "--heartbeat 5 --keep-weights 1 --no-stop-at-target --accept-change &")


def test_submit_and_its_dry_run_load_no_torch(write_study, tmp_path):
    """A login node submits in a second or two: torch alone takes seconds to import."""
    probe = ("import sys\nfrom hpsearch.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as end:\n"
             "    print('exit', end.code, 'torch' in sys.modules, file=sys.stderr)\n")
    env = {**os.environ, **SHARED, "HPSEARCH_STORAGE": SERVER, "HPSEARCH_CHECKPOINTS": "/shared/checkpoints"}
    dry = subprocess.run([sys.executable, "-c", probe, "submit", "--study", str(write_study()), "--jobs", "2",
                          "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert dry.stderr.splitlines()[-1] == "exit 0 False", dry.stderr
    env["PATH"] = str(tmp_path)  # no sbatch: submit goes as far as a submission does without one
    real = subprocess.run([sys.executable, "-c", probe, "submit", "--study", str(write_study()), "--jobs", "2",
                           "--one-node", "--storage", f"sqlite:///{tmp_path / 'x.db'}"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert "sbatch is not on PATH" in real.stderr and real.stderr.splitlines()[-1] == "exit 2 False", real.stderr


def test_a_password_on_the_command_line_is_refused_and_never_shown(write_study):
    out = refused(submit("--study", str(write_study()), "--storage", SERVER, "--jobs", "2", "--dry-run",
                         env={"HPSEARCH_CHECKPOINTS": "/shared/checkpoints"}), "HPSEARCH_STORAGE")
    assert "s3cret" not in out


# Each would run `touch PWNED` if bash read it as anything but text, or break out of the quotes around it; the last
# tests sbatch's own reading (a backslash escapes even between quotes; %x in --output is the job's name).
HOSTILE = ["$(touch PWNED)", "`touch PWNED`", "it's \"quoted\" & $HOME", 'a"; touch PWNED; echo "b #c', "100%x \\n \\"]


def hostile_job(tmp_path: Path, monkeypatch, value: str):
    """The ArrayJob of a submission with `value` in the working folder's name (and so the study file's path),
    $HPSEARCH_LOGS, $HPSEARCH_CHECKPOINTS (with a newline too), --partition and --sbatch-arg."""
    from hpsearch.search import slurm
    from hpsearch.studyfile.catalog import load_study_spec

    work = tmp_path / f"work {value}"
    work.mkdir()
    monkeypatch.chdir(work)
    study = work / "study.yaml"
    study.write_text((tmp_path / "study.yaml").read_text())
    # a backslash in the log folder is refused (test_a_value_sbatch_would_misread_is_refused_in_one_line)
    monkeypatch.setenv("HPSEARCH_LOGS", str(tmp_path / f"logs {value.replace(chr(92), '/')}"))
    monkeypatch.setenv("HPSEARCH_CHECKPOINTS", str(tmp_path / f"checkpoints {value}\nnext line"))
    return slurm.plan(str(study), load_study_spec(str(study)), SERVER,
                      RunOptions(mlflow="http://alice:s3cret-ml@tracker:5000"), jobs=2, partition=value,
                      sbatch_args=(f"--comment={value}",), one_node=True)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_run_nothing_in_bash_and_reach_the_worker_intact(write_study, tmp_path, monkeypatch, value):
    """The script itself under bash, with a stand-in for the worker's python that records its arguments."""
    from dataclasses import replace

    from hpsearch.search.slurm import batch_script

    write_study()
    recorder = tmp_path / "python"
    recorder.write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$RECORDED"\n')
    recorder.chmod(0o755)
    job = replace(hostile_job(tmp_path, monkeypatch, value), python=str(recorder))
    script = batch_script(job)
    assert "s3cret" not in script  # neither URL is written: they travel in the environment
    env = {**os.environ, "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "0", "HPSEARCH_STORAGE": SERVER,
           "MLFLOW_TRACKING_URI": "http://alice:s3cret-ml@tracker:5000", "RECORDED": str(tmp_path / "argv")}

    unseen = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert unseen.returncode == 2 and unseen.stderr == ""
    assert unseen.stdout.splitlines()[-2:] == [f"error: the checkpoint folder {job.checkpoints}".split("\n")[0],
                                               f"next line is not visible on {os.uname().nodename}"]

    job.checkpoints.mkdir(parents=True)
    ran = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    argv = (tmp_path / "argv").read_text().split("\0")[:-1]
    assert argv == job.run_command()[1:] and argv[argv.index("--study") + 1] == str(Path.cwd() / "study.yaml")
    assert argv[-1] == "--mlflow"
    assert not list(tmp_path.rglob("PWNED"))


@pytest.mark.parametrize("option, value, given_as", [
    ("--partition", "gpu\ntouch PWNED", "--partition"),
    ("--sbatch-arg", "--comment=a\ntouch PWNED", "--sbatch-arg"),
    ("--sbatch-arg", "--comment=a\rb", "--sbatch-arg"),
    ("HPSEARCH_LOGS", "logs\ntouch PWNED", "the log folder"),
    ("HPSEARCH_LOGS", "logs\\x", "the log folder"),
    ("folder", "work\ntouch PWNED", "the current folder"),
])
def test_a_value_sbatch_would_misread_is_refused_in_one_line(write_study, tmp_path, monkeypatch, option, value,
                                                              given_as):
    study = write_study()
    env = {"HPSEARCH_STORAGE": SERVER, "HPSEARCH_CHECKPOINTS": "/shared/checkpoints"}
    args = ["--study", str(study), "--jobs", "2", "--dry-run"]
    if option == "HPSEARCH_LOGS":
        env[option] = str(tmp_path / value)
        args.append("--one-node")  # a log folder under /tmp is refused for a cluster before it is read
    elif option == "folder":
        (tmp_path / value).mkdir()
        monkeypatch.chdir(tmp_path / value)
    else:
        args += [option, value]
    out = refused(submit(*args, env=env), given_as)
    assert repr(value) in out or repr(str(tmp_path / value)) in out
    assert not list(tmp_path.rglob("PWNED"))


def test_submit_hands_sbatch_the_urls_in_its_environment_only(write_study, tmp_path, monkeypatch):
    """A stand-in sbatch on PATH records what it was given: the script on stdin, the URLs in its environment."""
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\ncat > "$SEEN.script"\nenv > "$SEEN.env"\nprintf "%s " "$@" > "$SEEN.argv"\necho 42\n')
    fake.chmod(0o755)
    storage = f"sqlite:///{tmp_path / 'array.db'}"
    mlflow = "http://alice:s3cret-ml@tracker:5000"
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    result = submit("--study", str(write_study()), "--storage", storage, "--jobs", "2", "--one-node", "--mlflow",
                    env={"SEEN": str(tmp_path / "seen"), "MLFLOW_TRACKING_URI": mlflow})
    assert result.exit_code == 0, result.output
    assert "submitted job 42" in result.output and "MLflow http://alice:***@tracker:5000" in result.output
    assert "s3cret" not in result.output
    seen = {kind: (tmp_path / f"seen.{kind}").read_text() for kind in ("script", "env", "argv")}
    assert f"HPSEARCH_STORAGE={storage}\n" in seen["env"] and f"MLFLOW_TRACKING_URI={mlflow}\n" in seen["env"]
    assert "s3cret" not in seen["script"] + seen["argv"] and storage not in seen["script"] + seen["argv"]


def test_an_mlflow_password_on_the_command_line_is_refused_and_never_shown(write_study, storage):
    out = refused(submit("--study", str(write_study()), "--storage", storage, "--jobs", "2", "--one-node",
                         "--mlflow", "http://alice:s3cret-ml@tracker:5000", "--dry-run"), "MLFLOW_TRACKING_URI")
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
    result = CliRunner().invoke(main, ["submit", "--partition", PARTITION, "--one-node", *args], env=env)
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
    """Every trial meets the study's target, which ends a run unless --no-stop-at-target: the array goes on."""
    path = write_study(budget={"epochs": 2, "trials": 3}, target={"metric": "val_accuracy", "value": 0.05})
    storage = f"sqlite:///{tmp_path / 'array.db'}"
    job = submitted("--study", str(path), "--storage", storage, "--jobs", "2", "--until", "6",
                    "--no-stop-at-target")
    wait_until_ended(job)
    study = load(storage)
    assert len(study.trials) == 6, logs(tmp_path)  # in array-files/logs, beside the SQLite file
    assert_exact_total(study, 6)
    assert {t.user_attrs[A.SLURM]["array_job_id"] for t in study.trials} == {int(job)}
    assert {t.user_attrs[A.SLURM]["array_task_id"] for t in study.trials} <= {0, 1}
    assert len({t.user_attrs[A.RUN] for t in study.trials}) == 1  # one run: the array


@needs_slurm
def test_sbatch_and_the_task_read_hostile_values_as_given(write_study, tmp_path, monkeypatch):
    """A real task in a folder whose name holds every hostile value (so do its storage's folder, and so its log
    folder and checkpoints, and a --comment): it runs its trial there and logs where `submit` said; a partition
    that could run a command is refused by sbatch in one line."""
    value = "".join(HOSTILE[:4]) + " 100%x #c"
    work, store = tmp_path / f"work {value} \\n \\", tmp_path / f"store {value}"
    work.mkdir()
    store.mkdir()
    monkeypatch.chdir(work)
    study = write_study("study.yaml", budget={"epochs": 1, "trials": 1})
    storage = f"sqlite:///{store / 'array.db'}"
    result = submit("--partition", PARTITION, "--one-node", "--study", str(study.rename(work / "study.yaml")),
                    "--storage", storage, "--jobs", "1", "--until", "1", f"--sbatch-arg=--comment={value}")
    assert result.exit_code == 0, result.output
    job = re.search(r"submitted job (\d+)", result.output)[1]
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout.splitlines()
    assert f"   Comment={value} " in shown and f"   WorkDir={work}" in shown
    wait_until_ended(job)
    assert [t.state for t in load(storage).trials] == [TrialState.COMPLETE], logs(tmp_path)
    log = re.search(r"each task's log: (.*)\n", result.output)[1].replace("<task>", "0")
    assert f"hpsearch: task {job}_0 on " in Path(log).read_text()
    assert not list(tmp_path.rglob("PWNED"))

    refused(submit("--partition", "$(touch PWNED) #x", "--one-node", "--study", str(work / "study.yaml"),
                   "--storage", storage, "--jobs", "1"), "sbatch refused the job array", "partition")
    assert not list(tmp_path.rglob("PWNED"))


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
        assert copy.user_attrs[A.RESUMED_FROM_EPOCH] - first.user_attrs[A.EPOCHS_TRAINED] in (0, 1)
        assert first.user_attrs[A.EPOCHS_TRAINED] >= 2
        assert first.user_attrs[A.SLURM]["restart_count"] == 0
        assert copy.user_attrs[A.SLURM] == {**first.user_attrs[A.SLURM], "restart_count": 1}  # the same task, back
        log = logs(tmp_path)
        assert "start 1" in log and "start 2" in log


@needs_slurm
@needs_postgres
def test_a_task_whose_worker_is_killed_outright_requeues_itself_and_resumes_its_trial(write_study, tmp_path):
    """kill -9 (what the out-of-memory killer sends) on the task's worker: it records nothing; the task says so,
    requeues itself, and its next start fails the trial as worker lost and resumes the copy from its checkpoint."""
    path = write_study(budget={"epochs": 12, "trials": 1}, **SLOW)
    with empty_postgres_database() as storage:
        env = {"HPSEARCH_STORAGE": storage, "HPSEARCH_CHECKPOINTS": str(tmp_path / "shared" / "checkpoints")}
        job = submitted("--study", str(path), "--jobs", "1", "--until", "1", env=env)

        def worker_after_two_epochs() -> int | None:
            try:
                trials = load(storage).trials
            except KeyError:
                return None
            if not trials or len(trials[0].intermediate_values) < 2:
                return None
            return int(trials[0].user_attrs[A.WORKER].rpartition(":")[2])

        wait_for(lambda: worker_after_two_epochs() is not None)
        os.kill(worker_after_two_epochs(), 9)
        wait_until_ended(job, timeout=240)
        study = load(storage)
        assert len(study.trials) == 2, logs(tmp_path)
        first, copy = study.trials
        assert first.state == TrialState.FAIL, logs(tmp_path)
        assert first.user_attrs[A.FAILURE] == (f"worker lost: its SLURM task {job}_0 started again (start 2) while "
                                               "the trial ran")
        assert copy.state == TrialState.COMPLETE and copy.system_attrs["failed_trial"] == 0
        assert copy.user_attrs[A.RESUMED_FROM_EPOCH] >= 2
        log = logs(tmp_path)
        assert (f"hpsearch: task {job}_0: its worker was killed (SIGKILL); the task requeues itself to resume its "
                "trial (start 2 of at most 4)") in log
        assert "trial #1, copy of #0, resumed from its checkpoint at epoch" in log


@needs_slurm
def test_a_stop_covers_an_array_task_still_pending(write_study, tmp_path):
    """`hpsearch stop` from the login node while the array waits in SLURM's queue: `submit` recorded the array, so
    the request names it, and its task, once it starts, starts no trial and ends cleanly, saying why."""
    path = write_study(budget={"epochs": 1, "trials": 3})
    storage = f"sqlite:///{tmp_path / 'array.db'}"
    first = CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu",
                                      "--n-trials", "1"])
    assert first.exit_code == 0, first.output
    job = submitted("--study", str(path), "--storage", storage, "--jobs", "1", "--until", "3",
                    "--no-stop-at-target", "--sbatch-arg=--hold")
    try:
        assert job_states(job) == ["PENDING"]
        stopped = CliRunner().invoke(main, ["stop", "--study", str(path), "--storage", storage])
        assert stopped.exit_code == 0 and "stop requested by " in stopped.stdout, stopped.output
        status = CliRunner().invoke(main, ["status", "--study", str(path), "--storage", storage, "--format", "json"])
        assert len(json.loads(status.stdout)["stop"]["runs"]) == 2  # the first run's and the array's
        subprocess.run(["scontrol", "release", job], check=True)
        wait_until_ended(job)
    finally:
        subprocess.run(["scancel", job], check=False)  # a held job left behind would wait for ever
    assert [t.state for t in load(storage).trials] == [TrialState.COMPLETE], logs(tmp_path)
    assert "study tiny-digits: stop requested by " in logs(tmp_path)


def test_a_task_ends_its_log_with_one_line_not_the_studys_summary(write_study, storage):
    """Each task of an array is `hpsearch run --run-id ID`; `hpsearch status` and `best` show the study."""
    path = write_study(budget={"epochs": 1, "trials": 1})
    task = CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu",
                                     "--run-id", "array-1"])
    assert task.exit_code == 0, task.output
    assert task.stdout == ("this task's part is done: 1 trial here, 1 finished trial in the study (`hpsearch status` "
                           "and `hpsearch best` show it)\n")
