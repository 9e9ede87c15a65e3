"""`hpsearch submit`: a SLURM job array of hpsearch workers on one study, and the batch script it runs.

Each array task runs `hpsearch run` on the study's storage, which counts all their trials together as
it does for workers started by hand: PostgreSQL, or SQLite where every task runs on one node. The script
is written here rather than by a library (submitit pickles a Python call into it), so that `--dry-run`
shows all of it and a cluster's admin can read what will run.

Stopping. SLURM stops a task that is cancelled, preempted or requeued with SIGTERM (SIGKILL KillWait
seconds later): the worker records its running trial as failed and queues its copy (signals.py), and a
preempted or requeued task comes back by itself (`--requeue`). Before a time limit SLURM sends nothing
unless asked: each task asks for USR1 WARN_S seconds ahead, then stops its worker the same way and puts
itself back in the queue. Not TERM@WARN_S: the script could not tell that warning from `scancel`, and a
task that requeued itself on every SIGTERM could never be cancelled. Whichever task starts next runs the
copy first and resumes it from its checkpoint, so checkpoints must live where every node sees them.

Writing the script. Every value in it is quoted for its reader: bash reads the commands, sbatch the #SBATCH
lines (as a shell reads words, up to the line's end). Neither names a URL: the storage's and MLflow's travel
in the tasks' environment (workers.worker_environment), where no script, `ps` or `--dry-run` shows a password.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from hpsearch import __version__, escape
from hpsearch.errors import ClusterError
from hpsearch.paths import slug
from hpsearch.search.workers import worker_environment
from hpsearch.storage import folder_beside, mask, scrub, sqlite_file
from hpsearch.studyfile import catalog
from hpsearch.studyfile.types import StudySpec
from hpsearch.training.checkpoint import checkpoint_root

WARN_S = 120  # USR1 this long before a task's time limit: SLURM's timer may be up to a minute late
NODE_LOCAL = ("/tmp", "/var/tmp")  # folders no other node sees, whatever is mounted there
IN_MEMORY = ("tmpfs", "ramfs")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # a newline would end an #SBATCH line, and the rest run as a command


@dataclass(frozen=True)
class ArrayJob:
    """What `hpsearch submit` asks of SLURM: `jobs` tasks, each one `hpsearch run` on the study."""

    study: str  # --study for `hpsearch run`: a shipped study's name, or a study file's absolute path
    name: str  # the study's name, in the job's name
    jobs: int
    run_id: str  # shared by every task, so that --n-trials counts the array's trials together
    log_dir: Path  # absolute: one log per task, its attempts appended
    checkpoints: Path  # absolute: a requeued task's copy resumes from here
    workdir: Path
    python: str  # this interpreter: the tasks run the hpsearch that submitted them
    until: int | None = None
    n_trials: int | None = None
    gpus_per_job: int = 0
    trials_per_gpu: int = 1
    partition: str | None = None
    time: str | None = None
    sbatch_args: tuple[str, ...] = ()
    mlflow: str | None = None  # every task logs its trials to this MLflow tracking URI, given in its environment

    @property
    def job_name(self) -> str:
        return slug(self.name)

    def log(self, job_id: str, task: str = "<task>") -> Path:
        """A task's log (sbatch's %x-%A_%a)."""
        return self.log_dir / f"{self.job_name}-{job_id}_{task}.log"

    def run_command(self) -> list[str]:
        cmd = [self.python, "-m", "hpsearch", "run", "--study", self.study, "--run-id", self.run_id]
        if self.gpus_per_job:
            cmd += ["--device", "cuda", "--trials-per-gpu", str(self.trials_per_gpu)]
        else:
            cmd += ["--device", "cpu"]
        if self.until is not None:
            cmd += ["--until", str(self.until)]
        elif self.n_trials is not None:
            cmd += ["--n-trials", str(self.n_trials)]
        if self.mlflow is not None:
            cmd.append("--mlflow")  # to $MLFLOW_TRACKING_URI
        return cmd


def plan(study: str, spec: StudySpec, url: str, *, jobs: int, until: int | None = None, n_trials: int | None = None,
         gpus_per_job: int = 0, trials_per_gpu: int = 1, partition: str | None = None, time: str | None = None,
         sbatch_args: tuple[str, ...] = (), one_node: bool = False, mlflow: str | None = None) -> ArrayJob:
    """The array that runs `spec` (given as --study `study`) on `url` from the current folder, or ClusterError
    where its tasks could not share the study (check_shared; with one_node the user says they share one node's
    disk)."""
    if time is not None:
        check_time_limit(time)
    checkpoints = checkpoint_root(url).resolve()
    if not one_node:
        check_shared(url, checkpoints)
    if bad := [arg for arg in sbatch_args if not arg.startswith("-")]:
        raise ClusterError(f"--sbatch-arg {bad[0]!r}: give one sbatch option each, such as --sbatch-arg=--mem=16G")
    if catalog.find_study_file(study) == Path(study):  # a path: the tasks may start elsewhere
        study = str(Path(study).resolve())
    return ArrayJob(study=study, name=spec.name, jobs=jobs, run_id=uuid.uuid4().hex,
                    log_dir=folder_beside(url, "logs", "HPSEARCH_LOGS").resolve(), checkpoints=checkpoints,
                    workdir=Path.cwd(), python=sys.executable, until=until, n_trials=n_trials,
                    gpus_per_job=gpus_per_job, trials_per_gpu=trials_per_gpu, partition=partition, time=time,
                    sbatch_args=tuple(sbatch_args), mlflow=mlflow)


def check_time_limit(limit: str) -> None:
    """ClusterError for a --time SLURM would not take, or one so short that a task is warned of its end as it
    starts, and so requeues itself for ever."""
    parts = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", limit)
    if parts is None:
        raise ClusterError(f"--time {limit!r}: give MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")
    days, *rest = parts.groups()
    numbers = [int(n) for n in rest if n is not None]
    if days is None:  # MM, MM:SS or HH:MM:SS
        hours, minutes, seconds = {1: (0, *numbers, 0), 2: (0, *numbers), 3: tuple(numbers)}[len(numbers)]
    else:  # D-HH, D-HH:MM or D-HH:MM:SS
        hours, minutes, seconds = (*numbers, 0, 0)[:3]
    if ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds < 2 * WARN_S:
        raise ClusterError(f"--time {limit}: a task is told to stop {WARN_S} s before its time limit, so give "
                           f"it at least {2 * WARN_S // 60} minutes")


def check_shared(url: str, checkpoints: Path) -> None:
    """ClusterError unless tasks on different nodes can share the study: its storage and its checkpoints."""
    if sqlite_file(url) is not None:
        raise ClusterError(f"{mask(url)} is an SQLite file, which processes on one machine only can share: use "
                           "PostgreSQL (export HPSEARCH_STORAGE=postgresql://...), or --one-node if every task runs "
                           "on this node")
    shown = escape.terminal(str(checkpoints))
    where = ("$HPSEARCH_CHECKPOINTS is not set" if not os.environ.get("HPSEARCH_CHECKPOINTS")
             else f"$HPSEARCH_CHECKPOINTS={shown} is on this node only" if node_local(checkpoints) else None)
    if where:
        raise ClusterError(f"{where}: set it to a folder every node sees (a shared file system), where a requeued "
                           "task's trial resumes from its checkpoint; or --one-node if every task runs on this node")


def node_local(folder: Path) -> bool:
    """Whether `folder` is certainly seen by one node only: under /tmp and its kin, or in memory (tmpfs).
    Any other folder is taken on the user's word: a shared mount cannot be told from a local disk."""
    if any(folder.is_relative_to(top) for top in NODE_LOCAL):
        return True
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:  # not Linux
        return False
    under = [(Path(point), kind) for point, kind in mounts if folder.is_relative_to(point)]
    return bool(under) and max(under, key=lambda mount: len(mount[0].parts))[1] in IN_MEMORY


def batch_script(job: ArrayJob) -> str:
    """The sbatch script of the whole array, or ClusterError for a value sbatch would misread (sbatch_line); it
    names no URL (those travel in $HPSEARCH_STORAGE and $MLFLOW_TRACKING_URI)."""
    if "\\" in str(job.log_dir):
        raise ClusterError(f"the log folder {str(job.log_dir)!r} holds a backslash, after which sbatch would name "
                           "every task's log the same: choose one without ($HPSEARCH_LOGS)")
    logs = str(job.log_dir).replace("%", "%%")  # sbatch reads %x, %A, %a in --output as the job's name and ids
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"# hpsearch {__version__} submit: {job.jobs} tasks on study {one_line(job.name, 'the study name')}, "
        "a SLURM job array.",
        "# The storage URL comes in $HPSEARCH_STORAGE, exported by `hpsearch submit`, never written here.",
        *(["# So does the MLflow tracking URI, in $MLFLOW_TRACKING_URI."] if job.mlflow is not None else []),
        f"#SBATCH --job-name={job.job_name}",
        f"#SBATCH --array=0-{job.jobs - 1}",
        sbatch_line(f"--chdir={job.workdir}", job.workdir, "the current folder"),
        sbatch_line(f"--output={logs}/%x-%A_%a.log", job.log_dir, "the log folder ($HPSEARCH_LOGS)"),
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",
        f"#SBATCH --signal=B:USR1@{WARN_S}",
        *([f"#SBATCH --gres=gpu:{job.gpus_per_job}"] if job.gpus_per_job else []),
        *([sbatch_line(f"--partition={job.partition}", job.partition, "--partition")] if job.partition else []),
        *([sbatch_line(f"--time={job.time}", job.time, "--time")] if job.time else []),
        *(sbatch_line(arg, arg, "--sbatch-arg") for arg in job.sbatch_args),
        "",
        "set -u",
        'task="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
        'echo "hpsearch: task $task on $(hostname), start $((${SLURM_RESTART_COUNT:-0} + 1))"',
        ': "${HPSEARCH_STORAGE:?is exported by hpsearch submit}"',
        *([': "${MLFLOW_TRACKING_URI:?is exported by hpsearch submit}"'] if job.mlflow is not None else []),
        f"if [ ! -d {q(str(job.checkpoints))} ]; then",
        f"  printf 'error: the checkpoint folder %s is not visible on %s\\n' {q(str(job.checkpoints))} \"$(hostname)\"",
        "  exit 2",
        "fi",
        'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
        "",
        " ".join(q(word) for word in job.run_command()) + " &",
        "worker=$!",
        "# scancel, preemption, scontrol requeue: the worker records its trial; SLURM requeues where it should.",
        "trap 'kill -TERM \"$worker\"' TERM",
        f"# {WARN_S} s before the time limit: the same, then back in the queue to resume the trial.",
        "trap 'requeue=1; kill -TERM \"$worker\"' USR1",
        'wait "$worker"; status=$?  # a trapped signal ends this wait early, while the worker records its trial',
        'while kill -0 "$worker" 2>/dev/null; do wait "$worker"; status=$?; done',
        'if [ -n "${requeue:-}" ]; then',
        '  scontrol requeue "$task" 2>/dev/null || true  # fails where SLURM has requeued it already',
        "fi",
        'exit "$status"',
    ]
    return "\n".join(lines) + "\n"


def sbatch_line(option: str, value: object, given_as: str) -> str:
    """`#SBATCH OPTION`, quoted as one word for sbatch, which reads the line as a shell would (quotes; `#` starts a
    comment) except that a backslash escapes even between single quotes. `value` is the user's part of the option,
    given as `given_as`: refused where it holds a control character (one_line)."""
    one_line(str(value), given_as)
    return "#SBATCH " + shlex.quote(option.replace("\\", "\\\\"))


def one_line(value: str, given_as: str) -> str:
    """`value`, or ClusterError naming `given_as` where it holds a control character: a newline would end its line
    of the batch script, and bash run the rest as a command."""
    if CONTROL.search(value):
        raise ClusterError(f"{given_as} {value!r} holds a control character (a newline, say), which no line of a "
                           "batch script can hold: choose one without")
    return value


def submit(job: ArrayJob, url: str) -> str:
    """Hand the script to sbatch, with the storage URL in its environment; the job id. The caller has checked the
    storage (preflight.check_storage), so that a wrong password or an unreachable server is one line here, not an
    error in every task's log."""
    script = batch_script(job)
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ClusterError("sbatch is not on PATH: submit from a machine that submits SLURM jobs (a login node); "
                           "--dry-run prints the batch script anywhere")
    job.log_dir.mkdir(parents=True, exist_ok=True)
    job.checkpoints.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sbatch, "--parsable"], input=script, capture_output=True, text=True,
                          env={**os.environ, **worker_environment(url, job.mlflow)})
    if done.returncode != 0:
        said = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise ClusterError(f"sbatch refused the job array: {scrub(said[-1], url).removeprefix('sbatch: error: ')}")
    return done.stdout.strip().split(";")[0]  # "JOBID" or "JOBID;CLUSTER"
