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

import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial

from hpsearch import record
from hpsearch.defaults import DEFAULT_HEARTBEAT_S
from hpsearch.errors import HpsearchError
from hpsearch.record import Confirmation, SeedResult, StudyRecord
from hpsearch.results import export, ranking
from hpsearch.results.stats import spread
from hpsearch.search.signals import hold_signals
from hpsearch.search.workers import POLL_S, Workers, WorkerSlot
from hpsearch.storage import NoLock, shared_lock
from hpsearch.training import retrain
from hpsearch.training.train import EpochStats

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
        """Train jobs until none is left unclaimed; returns how many this worker trained."""
        done = 0
        while (job := self._claim()) is not None:
            on_start(job)
            try:
                result = self._train(job, on_epoch)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: free the claim, so the next confirm takes it at once
                hold_signals()
                self._locked(lambda: self._release(job))
                raise
            self._locked(lambda: self._store(job, result))
            on_seed(job, result)
            done += 1
        return done

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


def summarize(seed_results: list[SeedResult]) -> Confirmation:
    """A trial's confirmation: every seed's result (lowest seed first), and the spread of those that trained."""
    seed_results = sorted(seed_results, key=lambda r: r.seed)
    trained = [r for r in seed_results if r.trained]
    if not trained:
        return Confirmation(tuple(seed_results))
    return Confirmation(tuple(seed_results), spread([r.val_accuracy for r in trained]),
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
            time.sleep(POLL_S)

    pool.supervise(wait)
    said = [(pool.log_dir / f"worker-{index}.log").read_text() for index in range(workers)]
    pool.remove_logs()
    return said
