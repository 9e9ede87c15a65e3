"""Confirmation: the study's best K trials trained again with new seeds, so the winner is not the luckiest seed.

A job is one (trial, seed). The seeds are the study's training seed + 1, + 2, …: never the seed the
trial ran with, the same for every trial (so trials are compared on the same seeds), and the same
on every machine. Any number of processes, on any machines, work through the jobs together: each
claims its next job under the study lock (storage.shared_lock), so no two train the same one, and
stores each result as soon as it is trained, in one write, so an interruption loses at most the job
in training. A claim names its worker and is refreshed while it trains; the claim of a worker that
died (its process is gone, or its claim went silent) is taken over.

The results of trial N live in the study user attribute `confirm #N` (record/confirm.py), one write
per result: every seed's validation and test accuracy, and their mean, sample std and 95% interval.
Optuna freezes a finished trial's own attributes; ranking.study_trials puts each result back on its
trial for every command that reads it, and the dashboard lists them with the study's attributes.
Training is retrain.retrain, the same code `hpsearch train --seeds` runs.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import torch
from optuna.trial import FrozenTrial

from hpsearch import record, stopping
from hpsearch.defaults import DEFAULT_HEARTBEAT_S
from hpsearch.errors import HpsearchError
from hpsearch.record import SeedResult, StudyRecord
from hpsearch.results import export, ranking
from hpsearch.results.stats import spread
from hpsearch.search.workers import POLL_S, Workers, WorkerSlot
from hpsearch.storage import STOPPING_LOCK_WAIT_S, NoLock, shared_lock
from hpsearch.training import retrain
from hpsearch.training.train import EpochStats

if TYPE_CHECKING:
    from hpsearch.search.tracking import Tracker

log = logging.getLogger(__name__)

CLAIM_REFRESH_S = DEFAULT_HEARTBEAT_S  # a training job's claim is refreshed this often
CLAIM_STALE_S = 2 * DEFAULT_HEARTBEAT_S  # a claim not refreshed for this long belongs to a lost worker


@dataclass(frozen=True)
class Job:
    trial: FrozenTrial
    seed: int

    @property
    def key(self) -> str:
        return f"{self.trial.number}:{self.seed}"


def seeds_for(base_seed: int, count: int) -> list[int]:
    """The confirmation seeds: base + 1 … base + count (the trial itself ran with base)."""
    return list(range(base_seed + 1, base_seed + count + 1))


def base_seed(study: optuna.Study) -> int:
    """The training seed every trial of the study ran with (recorded when the study was made)."""
    seed = record.study_record(study).seed
    return 0 if seed is None else seed


def chosen(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """The trials to confirm: the best `top` by single-run validation accuracy, limits respected."""
    trials = ranking.ranked(study.get_trials(deepcopy=False))[:top]
    if not trials:
        raise HpsearchError(f"study {study.study_name!r} has no completed trial within its limits to confirm: "
                            f"`hpsearch run --study {study.study_name}` first")
    return trials


def stored_seeds(stored: StudyRecord, trial: FrozenTrial) -> dict[int, SeedResult]:
    """The trial's confirmation results by seed, from the study's record as just read (another worker may have
    added some since the study was opened)."""
    confirmation = stored.confirmations.get(trial.number)
    return confirmation.by_seed() if confirmation is not None else {}


def missing(study: optuna.Study, top: int, seeds: int) -> list[Job]:
    """The jobs that hold no result yet, best trial first, lowest seed first."""
    wanted = seeds_for(base_seed(study), seeds)
    stored = record.study_record(study)
    return [Job(t, s) for t in chosen(study, top) for s in wanted if s not in stored_seeds(stored, t)]


class Confirmation:
    """One worker's share of a confirmation: claim a job, train it, store it, until no job is left."""

    def __init__(self, study: optuna.Study, storage_url: str, top: int, seeds: int, device: torch.device, *,
                 data_dir: Path | None = None, lock: NoLock | None = None):
        self.study = study
        self.storage_url = storage_url
        self.trials = chosen(study, top)
        self.seeds = seeds_for(base_seed(study), seeds)
        self.device = device
        self.data_dir = data_dir
        self.lock = lock or shared_lock(storage_url, study.study_name)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.refreshed = 0.0

    def work(self, on_seed: Callable[[Job, SeedResult], None] = lambda job, result: None,
             on_start: Callable[[Job], None] = lambda job: None,
             on_epoch: Callable[[EpochStats], None] = lambda stats: None) -> int:
        """Train jobs until none is left unclaimed; returns how many this worker trained. A stop asked for
        (stopping.py) is raised between jobs, or by the job's training."""
        done = 0
        while True:
            stopping.check()
            if (job := self._claim()) is None:
                return done
            on_start(job)
            try:
                result = self._train(job, on_epoch)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: free the claim, so the next confirm takes it at once
                self._release_interrupted(job)
                raise
            self._locked(lambda: self._store(job, result))
            on_seed(job, result)
            done += 1

    def _train(self, job: Job, on_epoch: Callable[[EpochStats], None]) -> SeedResult:
        config = export.parse_config(export.trial_config(self.study, job.trial, self.storage_url),
                                     f"trial #{job.trial.number}")

        def epoch_finished(stats: EpochStats) -> None:
            if time.time() - self.refreshed >= CLAIM_REFRESH_S:
                self._locked(lambda: self._set_claim(job))
            on_epoch(stats)

        try:
            retrained = retrain.retrain(config, job.seed, self.device, data_dir=self.data_dir,
                                       storage=self.storage_url, on_epoch=epoch_finished)
        except HpsearchError as exc:  # the loss diverged with this seed: a result too
            return SeedResult(job.seed, failure=str(exc), device=str(self.device))
        return replace(retrain.seed_result(retrained), device=str(self.device))

    def _release_interrupted(self, job: Job) -> None:
        """Free a stopping worker's claim, waiting STOPPING_LOCK_WAIT_S at most for the lock (a SIGTERM-stopped
        worker has no second Ctrl-C to cut a longer wait short): where the storage cannot take it now, the claim lapses once its worker
        is seen gone, and the next confirm trains the job then."""
        try:
            self.lock.acquire(time.monotonic() + STOPPING_LOCK_WAIT_S)
            try:
                self._release(job)
            finally:
                self.lock.release()
        except Exception as exc:  # noqa: BLE001 - the worker is stopping; its exit status must stay 130 / 143
            log.warning("trial #%d seed %d was left claimed (%s): the next confirm trains it once this worker is seen "
                        "gone", job.trial.number, job.seed, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    # Everything below runs under the study lock.

    def _locked(self, action: Callable[[], object]):
        self.lock.acquire()
        try:
            return action()
        finally:
            self.lock.release()

    def _claim(self) -> Job | None:
        def claim() -> Job | None:
            claims, stored = record.claims(self.study), record.study_record(self.study)
            for trial in self.trials:
                done = stored_seeds(stored, trial)
                for seed in self.seeds:
                    job = Job(trial, seed)
                    if seed not in done and (job.key not in claims or _lost(claims[job.key])):
                        self._set_claim(job)
                        return job
            return None

        return self._locked(claim)

    def _set_claim(self, job: Job) -> None:
        self.refreshed = time.time()
        record.set_claims(self.study, {**record.claims(self.study), job.key: {"worker": self.worker, "at": self.refreshed}})

    def _release(self, job: Job) -> None:
        claims = record.claims(self.study)
        if claims.get(job.key, {}).get("worker") == self.worker:
            del claims[job.key]
            record.set_claims(self.study, claims)

    def _store(self, job: Job, result: SeedResult) -> None:
        seeds = stored_seeds(record.study_record(self.study), job.trial)
        seeds[job.seed] = result
        record.store_confirmation(self.study, job.trial.number, summarize(list(seeds.values())))
        self._release(job)


def summarize(seed_results: list[SeedResult]) -> record.Confirmation:
    """A trial's confirmation: every seed's result (lowest seed first), and the spread of those that trained."""
    seed_results = sorted(seed_results, key=lambda r: r.seed)
    trained = [r for r in seed_results if r.trained]
    if not trained:
        return record.Confirmation(tuple(seed_results))
    return record.Confirmation(tuple(seed_results), spread([r.val_accuracy for r in trained]),
                               spread([r.test_accuracy for r in trained]))


def _lost(claim: dict) -> bool:
    """Whether a claim's worker is gone: its process on this machine has ended, or its claim went silent."""
    host, _, pid = claim["worker"].rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, someone else's
            pass
    return time.time() - claim["at"] > CLAIM_STALE_S


@dataclass(frozen=True)
class ConfirmPlan:
    """What a confirmation is about to do, for its display to say first."""

    study: str
    trials: int  # how many trials it confirms: the best `top` (fewer where fewer completed)
    seeds: tuple[int, ...]  # the seeds each trial is trained with
    to_train: int  # training runs no worker has stored yet
    workers: int
    device: torch.device


@dataclass(frozen=True)
class Confirmed:
    """The confirmation's outcome, read back from the storage once every worker has finished."""

    table: list[tuple[str, ...]]  # report.confirmation's rows: the confirmed trials, best mean first
    verdict: list[str]  # what they say of the winner
    said: list[str]  # with several workers, what each said (a line per seed), in worker order


Progress = Callable[[ConfirmPlan], AbstractContextManager[object]]


def confirm(study: optuna.Study, storage_url: str, top: int, seeds: int, *, workers: int = 1, device: str = "auto",
            data_dir: Path | None = None, tracker: Tracker | None = None, as_worker: bool = False,
            progress: Progress | None = None,
            on_seed: Callable[[Job, SeedResult], None] | None = None) -> Confirmed | None:
    """`hpsearch confirm`: train what is missing of the best `top` trials' `seeds` seeds, in this process or in
    `workers` processes on this machine, each result stored (and sent to `tracker`) as it is trained; then the
    confirmed trials as the report shows them. With `as_worker` this process is one of those workers: it trains
    its share and returns None."""
    from hpsearch.results import report
    from hpsearch.search.studystore import load_existing
    from hpsearch.training.devicedata import resolve_device

    def seed_done(job: Job, result: SeedResult) -> None:
        if on_seed:
            on_seed(job, result)
        if tracker:
            tracker.confirmed(job.trial, result)

    if tracker:
        tracker.study_opened(study)
    torch_device = resolve_device(device)
    if as_worker:
        Confirmation(study, storage_url, top, seeds, torch_device, data_dir=data_dir).work(on_seed=seed_done)
        return None
    todo = missing(study, top, seeds)
    plan = ConfirmPlan(study.study_name, len(chosen(study, top)), tuple(seeds_for(base_seed(study), seeds)),
                       len(todo), workers, torch_device)
    said = []
    with progress(plan) if progress else nullcontext():
        if todo and workers == 1:
            Confirmation(study, storage_url, top, seeds, torch_device, data_dir=data_dir).work(on_seed=seed_done)
        elif todo:
            said = run_workers(study.study_name, storage_url, top, seeds, workers, device, data_dir,
                               mlflow=tracker and tracker.uri)
    study = load_existing(study.study_name, storage_url)  # a fresh read: the results are on finished trials
    if tracker:
        tracker.summarize(study)
    table, verdict = report.confirmation(ranking.study_trials(study))
    return Confirmed(table, verdict, said)


def run_workers(study_name: str, storage_url: str, top: int, seeds: int, workers: int, device: str,
                data_dir: Path | None, *, mlflow: str | None = None) -> list[str]:
    """`hpsearch confirm --worker` processes on this machine, sharing the jobs through the storage, until all
    have exited; what each said (a line per seed), in worker order. With `mlflow`, each logs its seeds there."""
    command = [sys.executable, "-m", "hpsearch", "confirm", "--study", study_name, "--top", str(top),
               "--seeds", str(seeds), "--device", device, "--worker",
               *(["--data-dir", str(data_dir)] if data_dir else []), *(["--mlflow"] if mlflow else [])]
    pool = Workers(study_name, storage_url, uuid.uuid4().hex, [WorkerSlot(device, None)] * workers,
                   lambda slot: command, mlflow=mlflow)

    def wait() -> None:
        while pool.running():
            stopping.check()
            time.sleep(POLL_S)

    pool.supervise(wait)
    said = [(pool.log_dir / f"worker-{index}.log").read_text() for index in range(workers)]
    pool.remove_logs()
    return said
