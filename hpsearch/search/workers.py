"""Several worker processes on one study: start them, pin them to GPUs, watch them in one view.

Each worker is `hpsearch worker`, the same command a user starts on another machine; they share
one run id, so RunBudget counts their trials together. The storage is the only channel: the
parent reads finished trials from it and prints them, whichever worker ran them. The storage URL and
the MLflow tracking URI travel in the environment (worker_environment), not on the command line, where
`ps` would show their passwords.
Each worker's output goes to a log in the storage's side folder (x-files/logs/ beside x.db, else
$HPSEARCH_LOGS or ./hpsearch-files/logs), one folder per run; a run whose workers all exit well removes
its folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpsearch import record, stopping
from hpsearch.errors import HpsearchError
from hpsearch.paths import slug
from hpsearch.results.trials import FINISHED
from hpsearch.search.options import RunOptions
from hpsearch.search.retries import fail_lost
from hpsearch.storage import folder_beside, is_new_sqlite, open_storage, shared_lock
from hpsearch.storage.optuna_private import trial_id
from hpsearch.studyfile.types import StudySpec

POLL_S = 0.5
STOP_GRACE_S = 30  # after Ctrl-C or SIGTERM, how long workers get to record their trial as failed
AT_ONCE_S = 5  # after a second Ctrl-C, how long workers get to stop at once before they are killed
MAX_RESTARTS = 3  # a worker killed outright is started again at most this often in one run


@dataclass(frozen=True)
class WorkerSlot:
    device: str  # the worker's --device
    gpu: int | None  # pinned with CUDA_VISIBLE_DEVICES, or None


def plan_workers(workers: int | None, gpus: tuple[int, ...], trials_per_gpu: int | None, device: str,
                 visible_gpus: int) -> list[WorkerSlot]:
    """Which workers to start: N on `device`, or K per listed (or, with only K, every visible) GPU."""
    if gpus or trials_per_gpu:
        if workers is not None:
            raise HpsearchError("--workers cannot be combined with --gpus/--trials-per-gpu: "
                                "workers are then one per GPU times --trials-per-gpu")
        if device == "cpu":
            raise HpsearchError("--gpus/--trials-per-gpu need --device cuda or auto, not cpu")
        if visible_gpus == 0:
            flag = "--gpus" if gpus else "--trials-per-gpu"
            raise HpsearchError(f"{flag}: torch sees no CUDA device on this machine (a CPU-only torch build, no "
                                "driver, or CUDA_VISIBLE_DEVICES hides them): use --workers N --device cpu here")
        chosen = gpus or tuple(range(visible_gpus))
        if any(g >= visible_gpus for g in chosen):
            raise HpsearchError(f"--gpus {','.join(map(str, chosen))}: only GPUs 0..{visible_gpus - 1} exist here")
        return [WorkerSlot("cuda", gpu) for gpu in chosen for _ in range(trials_per_gpu or 1)]
    if device == "cuda" and visible_gpus == 0:  # said here once, not by each worker started
        raise HpsearchError("--device cuda: no CUDA device is visible to torch (use --device cpu or auto)")
    return [WorkerSlot(device, None) for _ in range(workers or 1)]


def visible_gpu(index: int) -> str:
    """GPU `index` of those torch sees here, as a worker's CUDA_VISIBLE_DEVICES must name it: this process's own
    list may already hide some (SLURM gives a job GPUs 2,3 this way; torch calls them 0 and 1)."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    return given.split(",")[index].strip() if given else str(index)


def worker_command(study_path: str, options: RunOptions, slot: WorkerSlot, run_id: str) -> list[str]:
    return [sys.executable, "-m", "hpsearch", "worker", "--study", study_path, "--device", slot.device,
            "--run-id", run_id, *options.arguments()]


def log_root(storage_url: str) -> Path:
    """Where the workers of a run and the tasks of a SLURM array write their logs: beside the storage
    (x-files/logs/), for a server storage $HPSEARCH_LOGS, else ./hpsearch-files/logs."""
    return folder_beside(storage_url, "logs", "HPSEARCH_LOGS")


def worker_environment(storage_url: str, mlflow: str | None = None) -> dict[str, str]:
    """The URLs a worker started by another process (here, or as a SLURM task) is given in its environment: its
    command line is seen by every user of the machine (`ps`), and a URL may hold a password. The worker reads them
    where the user's own would be: --storage and a bare --mlflow fall back to these variables."""
    return {"HPSEARCH_STORAGE": storage_url, **({"MLFLOW_TRACKING_URI": mlflow} if mlflow is not None else {})}


class Workers:
    """The started worker processes, their logs, and how they ended.

    `command(slot)` is each worker's command line: `hpsearch worker` for a run (run_workers), or another
    command that shares its work through the storage (`hpsearch confirm`); with `mlflow`, each finds that tracking
    URI in its environment."""

    def __init__(self, study_name: str, storage_url: str, run_id: str, slots: list[WorkerSlot],
                 command: Callable[[WorkerSlot], list[str]], mlflow: str | None = None):
        self.run_id = run_id
        self.log_dir = log_root(storage_url) / f"{slug(study_name)}-{self.run_id[:8]}"
        self.log_dir.mkdir(parents=True)
        self.slots, self.command = slots, command
        self.environment = {**os.environ, **worker_environment(storage_url, mlflow), "PYTHONUNBUFFERED": "1"}
        self.cpu_workers = sum(slot.gpu is None for slot in slots)
        self.processes: list[subprocess.Popen] = []
        self.pids: dict[int, int] = {}  # every worker process started, replacements too -> its index
        self.restarts = [0] * len(slots)
        self.lost: set[int] = set()  # the pids of workers killed outright, once seen (killed)
        try:
            for index in range(len(slots)):
                self.processes.append(self._start(index, "w"))
        except BaseException:  # a second Ctrl-C while starting them: none of those started may outlive the run
            self.stop()
            raise

    def _start(self, index: int, mode: str) -> subprocess.Popen:
        slot, env = self.slots[index], dict(self.environment)
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible_gpu(slot.gpu)
        else:  # share the cores instead of every worker starting one thread per core
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.cpu_workers)))
        with open(self.log_dir / f"worker-{index}.log", mode) as log:
            process = subprocess.Popen(self.command(slot), env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        self.pids[process.pid] = index
        return process

    def index_of(self, trial_worker: str | None) -> int | None:
        """Which of our workers ran a trial, from its `worker` attribute (host:pid)."""
        host, _, pid = (trial_worker or "").rpartition(":")
        return self.pids.get(int(pid)) if host == socket.gethostname() and pid.isdigit() else None

    def running(self) -> bool:
        return any(p.poll() is None for p in self.processes)

    def killed(self) -> list[tuple[int, subprocess.Popen]]:
        """The workers killed outright since the last call (SIGKILL, the out-of-memory killer, a crash): ended by a
        signal, so they recorded nothing. A worker stopped by SIGTERM or Ctrl-C records its trial and exits with a
        status of its own (143, 130)."""
        killed = [(index, p) for index, p in enumerate(self.processes)
                  if p.poll() is not None and p.returncode < 0 and p.pid not in self.lost]
        self.lost.update(p.pid for _, p in killed)
        return killed

    def restart(self, index: int) -> bool:
        """Start worker `index` again in its slot, appending to its log, at most MAX_RESTARTS times; whether it
        did (a worker left dead is one of problems())."""
        if self.restarts[index] >= MAX_RESTARTS:
            return False
        self.restarts[index] += 1
        self.processes[index] = self._start(index, "a")
        return True

    def stop(self) -> None:
        """Pass a stop on to every worker, which records its trial as failed and queues its copy, and wait until
        they have exited; one still running after STOP_GRACE_S is killed, or AT_ONCE_S after a second Ctrl-C.

        The stop goes on as SIGTERM, whatever stopped this process: a worker may have heard the Ctrl-C already
        (a terminal sends it to every process of the job), and a second SIGINT would stop it at once, where a
        repeated SIGTERM is the same request (stopping.py). A second Ctrl-C reaches the workers from the terminal."""
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        try:
            try:
                self._wait(STOP_GRACE_S)
            except KeyboardInterrupt:  # Ctrl-C again
                self._wait(AT_ONCE_S)
                raise
        finally:
            for p in self.processes:
                if p.poll() is None:
                    p.kill()
                    p.wait()

    def _wait(self, seconds: float) -> None:
        """Until every worker has exited, or for `seconds`."""
        deadline = time.monotonic() + seconds
        while self.running() and time.monotonic() < deadline:
            time.sleep(POLL_S / 5)

    def remove_logs(self) -> None:
        """The run ended well: its logs say nothing worth keeping (nor does an emptied logs folder)."""
        shutil.rmtree(self.log_dir, ignore_errors=True)
        try:
            self.log_dir.parent.rmdir()
        except OSError:  # other runs' logs are still there
            pass

    def supervise(self, wait: Callable[[], None]) -> None:
        """wait() while the workers work, passing a stop on to them (Kubernetes or `kill` signal this process
        alone): wait() raises it between its looks at them (stopping.check). Then one line for each way workers
        ended badly, if any did."""
        try:
            wait()
        except KeyboardInterrupt:
            self.stop()
            raise
        if problems := self.problems():
            raise HpsearchError("\n".join(problems))

    def problems(self) -> list[str]:
        """One line per distinct way workers ended badly: which, their status, the last thing they said."""
        ended_badly: dict[tuple[int, str], list[int]] = {}
        for index, p in enumerate(self.processes):
            if p.returncode not in (0, None):
                said = (self.log_dir / f"worker-{index}.log").read_text().strip().splitlines()
                last = said[-1].removeprefix("error: ") if said else "(no output)"
                ended_badly.setdefault((p.returncode, last), []).append(index)
        return [f"worker{'s' if len(who) > 1 else ''} {', '.join(map(str, who))} exited with status {status}: "
                f"{last} (logs: {self.log_dir})" for (status, last), who in ended_badly.items()]


def run_workers(spec: StudySpec, storage_url: str, options: RunOptions, slots: list[WorkerSlot]) -> Workers:
    """Start the `hpsearch worker` processes of one run."""
    run_id = options.run_id or uuid.uuid4().hex
    return Workers(spec.name, storage_url, run_id, slots, lambda slot: worker_command(spec.path, options, slot, run_id),
                   mlflow=options.mlflow)


def watch(workers: Workers, study_name: str, storage_url: str, on_trial, on_poll,
          on_lost: Callable[[str], None] = lambda said: None) -> None:
    """Until every worker has exited: report each newly ended trial of this run, and the counts; recover each
    worker killed outright (recover), saying how in on_lost(line).

    A new SQLite file is opened only once a worker has made it, after reading its data."""
    seen: set[int] = set()
    storage = study = None
    while True:
        alive = workers.running()
        if storage is None and not is_new_sqlite(storage_url):
            storage = open_storage(storage_url)
        if storage is not None and study is None:
            try:
                study = optuna.load_study(study_name=study_name, storage=storage)
            except KeyError:  # no worker has created the study yet
                pass
        for index, process in workers.killed():
            on_lost(recover(workers, index, process, study, storage_url))
            alive = workers.running()
        if study is not None:
            trials = study.get_trials(deepcopy=False)
            on_poll(trials)
            for t in trials:
                ended = t.state in FINISHED or t.state == TrialState.FAIL
                if ended and t.number not in seen and record.run_id(t) == workers.run_id:
                    seen.add(t.number)
                    on_trial(t, workers.index_of(record.worker(t)))
        if not alive:
            return
        stopping.check()
        time.sleep(POLL_S)


def recover(workers: Workers, index: int, process: subprocess.Popen, study: optuna.Study | None,
            storage_url: str) -> str:
    """A worker killed outright (its process ended by a signal, so it recorded nothing): its running trial is
    failed now, as "worker lost", rather than once its heartbeat goes stale, and its copy queued; then the worker
    is started again in its slot (Workers.restart), where it resumes that copy first. What was done, in a line."""
    who = f"{socket.gethostname()}:{process.pid}"
    try:
        how = signal.Signals(-process.returncode).name
    except ValueError:
        how = f"signal {-process.returncode}"
    failed = []
    if study is not None:
        lock = shared_lock(storage_url, study.study_name)
        lock.acquire()
        try:
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if record.worker(trial) == who and fail_lost(
                        study, trial_id(trial), f"worker {index} ({who}) was killed by {how}"):
                    failed.append(trial.number)
        finally:
            lock.close()
    said = f"worker {index} ({who}) was killed by {how}"
    if failed:
        copied = [t for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                  if record.last_attempt(t) == failed[-1]]
        said += f": trial #{failed[0]} failed (worker lost)" + (
            f", its copy #{copied[0].number} runs next" if copied else ", tried too often to be queued again")
    if workers.restart(index):
        return f"{said}; worker {index} started again ({workers.restarts[index]} of at most {MAX_RESTARTS})"
    return f"{said}; not started again, having been killed {MAX_RESTARTS + 1} times in this run"
