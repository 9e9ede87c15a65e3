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
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from hpsearch import record
from hpsearch.errors import HpsearchError, Terminated
from hpsearch.paths import slug
from hpsearch.results.trials import FINISHED
from hpsearch.search.run import RunOptions
from hpsearch.search.signals import hold_signals
from hpsearch.storage import folder_beside, is_new_sqlite, open_storage
from hpsearch.studyfile.types import StudySpec

POLL_S = 0.5
RESEND_S = 2
STOP_GRACE_S = 30  # after Ctrl-C or SIGTERM, how long workers get to record their trial as failed


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
    cmd = [sys.executable, "-m", "hpsearch", "worker", "--study", study_path, "--device", slot.device,
           "--run-id", run_id, "--heartbeat", str(options.heartbeat),
           "--keep-weights", str(options.keep_weights)]
    if options.until is not None:
        cmd += ["--until", str(options.until)]
    elif options.n_trials is not None:
        cmd += ["--n-trials", str(options.n_trials)]
    for flag, value in (("--timeout", options.timeout), ("--seed", options.seed), ("--data-dir", options.data_dir)):
        if value is not None:
            cmd += [flag, str(value)]
    if options.mlflow is not None:
        cmd.append("--mlflow")  # to $MLFLOW_TRACKING_URI: see worker_environment
    if not options.stop_at_target:
        cmd.append("--no-stop-at-target")
    if options.accept_change:
        cmd.append("--accept-change")
    return cmd


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
        self.log_dir = folder_beside(storage_url, "logs", "HPSEARCH_LOGS") / f"{slug(study_name)}-{self.run_id[:8]}"
        self.log_dir.mkdir(parents=True)
        self.processes: list[subprocess.Popen] = []
        cpu_workers = sum(slot.gpu is None for slot in slots)
        try:
            for index, slot in enumerate(slots):
                env = {**os.environ, **worker_environment(storage_url, mlflow), "PYTHONUNBUFFERED": "1"}
                if slot.gpu is not None:
                    env["CUDA_VISIBLE_DEVICES"] = visible_gpu(slot.gpu)
                else:  # share the cores instead of every worker starting one thread per core
                    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cpu_workers)))
                with open(self.log_dir / f"worker-{index}.log", "w") as log:
                    self.processes.append(subprocess.Popen(
                        command(slot), env=env,
                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        except BaseException:  # a signal while starting them: none of those started may outlive the run
            self.stop(signal.SIGTERM)
            raise

    def index_of(self, trial_worker: str | None) -> int | None:
        """Which of our workers ran a trial, from its `worker` attribute (host:pid)."""
        pid = (trial_worker or "").rpartition(":")[2]
        return next((i for i, p in enumerate(self.processes) if str(p.pid) == pid), None)

    def running(self) -> bool:
        return any(p.poll() is None for p in self.processes)

    def stop(self, sig: signal.Signals) -> None:
        """Pass Ctrl-C (SIGINT) or SIGTERM on to every worker, which records its trial as failed and queues
        its copy, and wait; one still running after STOP_GRACE_S is killed. The signal is sent again every
        RESEND_S: a worker whose first one was lost (raised inside a __del__, say) hears the next, and one
        that is already recording its trial ignores it (errors.hold_signals)."""
        deadline, next_send = time.monotonic() + STOP_GRACE_S, 0.0
        try:
            while (alive := [p for p in self.processes if p.poll() is None]) and time.monotonic() < deadline:
                if time.monotonic() >= next_send:
                    for p in alive:
                        p.send_signal(sig)
                    next_send = time.monotonic() + RESEND_S
                time.sleep(POLL_S / 5)
        finally:
            for p in self.processes:
                if p.poll() is None:
                    p.kill()
                    p.wait()

    def remove_logs(self) -> None:
        """The run ended well: its logs say nothing worth keeping (nor does an emptied logs folder)."""
        shutil.rmtree(self.log_dir, ignore_errors=True)
        try:
            self.log_dir.parent.rmdir()
        except OSError:  # other runs' logs are still there
            pass

    def supervise(self, wait: Callable[[], None]) -> None:
        """wait() while the workers work, passing Ctrl-C or SIGTERM on to them (Kubernetes or `kill` signal
        this process alone); then one line for each way workers ended badly, if any did."""
        try:
            wait()
        except KeyboardInterrupt as exc:
            hold_signals()
            self.stop(signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
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


def watch(workers: Workers, study_name: str, storage_url: str, on_trial, on_poll) -> None:
    """Until every worker has exited: report each newly ended trial of this run, and the counts.

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
        time.sleep(POLL_S)
