"""Run trials on a study: seed the sampler, queue the cheap start-up draws and the baselines, count exact totals
under the study lock, and stop at the budget or the target.

Optuna does the coordination; this module only seeds the sampler, records what the study was
made from, holds the study lock where trials are counted and started, and stops at the target.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import record, stopping
from hpsearch.errors import HpsearchError
from hpsearch.results.artifacts import WeightKeeper
from hpsearch.results.trials import (
    FINISHED,
    NewlyFinished,
    first_reaching,
    is_baseline,
    is_warm_start,
)
from hpsearch.search import cost, warmstart
from hpsearch.search.objective import RunEvents, TrialFailed, make_objective, slurm_job
from hpsearch.search.options import RunOptions
from hpsearch.search.preflight import check_storage
from hpsearch.search.retries import (
    LostTrialSweep,
    fail_lost,
    fail_lost_trials,
    queue_retry,
)
from hpsearch.search.samplers import make_sampler, start_up_trials
from hpsearch.search.stop import StopCheck, StopRequested, record_run
from hpsearch.search.studystore import open_study
from hpsearch.storage import (
    STOPPING_LOCK_WAIT_S,
    LockWaitExpired,
    NoLock,
    cached,
    open_storage,
    optuna_private,
    shared_lock,
    writable_checkpoint_root,
)
from hpsearch.studyfile import params as P
from hpsearch.studyfile import plugins
from hpsearch.studyfile.baselines import BASELINES
from hpsearch.studyfile.types import StudySpec
from hpsearch.training import devicedata as data_module
from hpsearch.training import space, transfer
from hpsearch.training.devicedata import resolve_device
from hpsearch.training.space import fit_problem

log = logging.getLogger(__name__)


BASELINE_SHARE = 0.5  # while baselines remain, at most this share of a run's trial time goes to them


def _trial_seconds(trial: FrozenTrial, now: datetime.datetime) -> float:
    """Wall seconds a trial ran, or has run so far."""
    if trial.datetime_start is None:
        return 0.0
    return ((trial.datetime_complete or now) - trial.datetime_start).total_seconds()


def missing_baselines(trials: list[FrozenTrial], baselines: tuple[str, ...]) -> list[str]:
    """The study's baselines not queued yet in any run (each runs once per study)."""
    queued = {record.baseline(t) for t in trials}
    return [name for name in baselines if name not in queued]


SEARCHING, REACHED, NO_TARGET = "searching", "reached", "no target"  # a run's target, as baseline_due reads it


def baseline_due(trials: list[FrozenTrial], baselines: tuple[str, ...], run_id: str, slots_left: int,
                 now: datetime.datetime, *, target: str = NO_TARGET) -> str | None:
    """The baseline the next trial should run, or None for a sampled one.

    While the run SEARCHES for a target it stops at, baselines wait: a baseline never ends the search, so each
    hour spent on one before the target is an hour added to the time to it (cifar10-75's eleven take hours on
    a CPU). Once the target is REACHED they run (RunBudget.decide keeps the run going until they have). They
    run earlier when only as many trials are left in the run's budget as baselines, so that all of them still
    run within it. With NO_TARGET to stop at they interleave with the search instead of going first: a
    baseline is due once the search has had more of this run's time than the baselines (so the first trial is
    sampled, and the search keeps at least 1 - BASELINE_SHARE of the time while baselines remain). A waiting
    trial (a retried copy, its checkpoint ready) always goes first: Optuna starts it before anything new.
    """
    if any(t.state == TrialState.WAITING for t in trials):
        return None
    missing = missing_baselines(trials, baselines)
    if not missing:
        return None
    if slots_left <= len(missing) or target == REACHED:
        return missing[0]
    if target == SEARCHING:
        return None
    ours = [t for t in trials if record.run_id(t) == run_id]
    baseline_s = sum(_trial_seconds(t, now) for t in ours if is_baseline(t))
    search_s = sum(_trial_seconds(t, now) for t in ours if not is_baseline(t))
    return missing[0] if baseline_s < search_s * BASELINE_SHARE / (1 - BASELINE_SHARE) else None


class SamplerSeed:
    """Seeds the sampler so that workers never draw alike while one process's draws repeat.

    A seeded sampler's random stream stays with one process for as long as no other process adds a
    trial: a single process run on the same stored trials draws what it drew before. Whenever
    another process has added trials since this one last held the study lock, the sampler is
    reseeded with seed + the number of trials now stored. Two processes can hold the same stream
    only until one of them draws from it, which adds a trial and makes the other reseed first, so
    workers on any machine, coordinated by nothing but the storage, never share a stream.
    """

    def __init__(self, spec: StudySpec, seed: int | None):
        self.spec = spec
        self.base = seed if seed is not None else spec.sampler.options.get("seed")
        self.known: int | None = None  # the study's trial count when this process last held the lock

    def sampler(self, count: int) -> optuna.samplers.BaseSampler:
        """Under the lock, the sampler for a study now holding `count` trials: built when the study is opened,
        and again only to reseed."""
        self.known = count
        seed = None if self.base is None else (self.base + count) % (P.MAX_SEED + 1)  # wraps: samplers take 32 bits
        return make_sampler(self.spec.sampler.name, self.spec.sampler.options, seed)

    def follow(self, study: optuna.Study, count: int) -> None:
        """Under the lock, before this process adds anything: reseed if another process added trials."""
        if count != self.known and self.base is not None:
            study.sampler = self.sampler(count)
        self.known = count

    def added(self, count: int) -> None:
        """This process brought the count to `count` (queued copies)."""
        self.known = count

    def started(self, number: int) -> None:
        """This process started trial `number`: a new one, or one that was waiting."""
        self.known = max(self.known or 0, number + 1)


START, WAIT, DONE = "start", "wait", "done"


class DecisionView:
    """The trials a run's decisions read, kept up to date step by step instead of scanning the whole study:
    each trial looked at once it has finished (NewlyFinished), counted if it finished as FINISHED says, and kept
    only if a decision reads it (this run's trials, baselines, retried copies), with the unfinished ones."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.newly_finished = NewlyFinished()
        self.finished = 0  # how many trials seen finished are FINISHED
        self.kept: set[int] = set()  # finished trials a decision reads
        self.trials: list[FrozenTrial] = []  # what the decisions read, in number order

    def update(self, trials: list[FrozenTrial]) -> None:
        """Look at the trials added or unfinished since the last step."""
        for trial in self.newly_finished(trials):
            self.finished += trial.state in FINISHED and not is_warm_start(trial)
            if record.run_id(trial) == self.run_id or is_baseline(trial) or record.retry_history(trial):
                self.kept.add(trial.number)
        self.trials = [trials[n] for n in sorted(self.kept | self.newly_finished.unfinished)]


class RunBudget:
    """Whether a worker may start another trial, judged from the study's trials in the storage.

    hpsearch promises exact totals; Optuna's own stopping rule (MaxTrialsCallback) is checked after
    a trial ends, so N workers may overshoot by up to N-1 trials. So every worker of a run, on any
    machine, holds the study lock (storage.shared_lock) from failing lost trials and counting until
    its new trial exists (milliseconds, never while training): the run adds exactly n_trials trials,
    or the study ends with exactly `until` finished ones. A waiting copy of a failed trial is always
    started before anything new (Optuna pops waiting trials first), so it runs before the total is
    reached. Without a shared lock (storages other than SQLite and PostgreSQL) a total may be
    overshot by a trial or two.
    """

    def __init__(self, spec: StudySpec, options: RunOptions, run_id: str):
        self.spec = spec
        self.options = options
        self.run_id = run_id
        self.n_trials = options.n_trials or spec.budget.trials
        timeout = options.timeout or spec.budget.timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def record(self) -> dict[str, Any]:
        """What the run records of itself in the study (RunOptions.record), with the SLURM array it runs as."""
        job = slurm_job()
        return {**self.options.record(self.spec),
                **({"slurm_job": str(job.get("array_job_id", job["job_id"]))} if job else {})}

    def seconds_left(self) -> float | None:
        """What is left of the run's timeout (None: it has none): a trial projected past it stops (cost.py)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _counted(self, view: DecisionView) -> list[FrozenTrial]:
        """This run's trials, a retried trial counted once: its copy."""
        retried = record.retried_numbers(view.trials)
        return [t for t in view.trials if record.run_id(t) == self.run_id and t.number not in retried]

    def slots_left(self, view: DecisionView) -> int:
        """How many more trials this run may start."""
        if self.options.until is None:
            return self.n_trials - len(self._counted(view))
        return self.options.until - view.finished - sum(t.state == TrialState.RUNNING for t in view.trials)

    def out_of_time(self, view: DecisionView) -> bool:
        """Whether the run's timeout has passed, or what is left of it is shorter than the fastest trial this run
        completed took to train: a trial drawn now would likely be refused for time (cost.py), and each refusal
        is a trial of the study."""
        left = self.seconds_left()
        if left is None:
            return False
        took = [seconds for t in view.trials if record.run_id(t) == self.run_id and t.state == TrialState.COMPLETE
                and (seconds := record.measured(t, "train_seconds")) is not None]
        return left <= 0 or left < min(took, default=0.0)

    def target(self, view: DecisionView) -> str:
        """SEARCHING for a target the run stops at, REACHED it (by a sampled trial of this run), or NO_TARGET."""
        if not self.options.stop_at_target or self.spec.target is None:
            return NO_TARGET
        ours = [t for t in view.trials if record.run_id(t) == self.run_id]
        return SEARCHING if first_reaching(ours, self.spec) is None else REACHED

    def decide(self, view: DecisionView, slots_left: int) -> str:
        """START, WAIT or DONE, given the view of the study's trials and this run's slots_left(view). Once the
        target is reached, the run goes on only to run the baselines that waited for it (baseline_due)."""
        if self.out_of_time(view):
            return DONE
        if self.target(view) == REACHED:
            return START if slots_left > 0 and missing_baselines(view.trials, self.spec.baselines) else DONE
        if slots_left > 0:
            return START
        if self.options.until is None:
            # Another worker's trial may yet be lost, and its copy must then run in this run.
            return WAIT if any(t.state == TrialState.RUNNING for t in self._counted(view)) else DONE
        if view.finished >= self.options.until:
            return DONE
        return WAIT  # the running trials will finish, fail (a slot frees up) or go stale (and be retried)


def run(spec: StudySpec, storage_url: str, options: RunOptions, events: RunEvents | None = None,
        callbacks: list[Any] = ()) -> optuna.Study:
    """One worker: add trials to the study until the run's budget, timeout or target says stop.

    Several workers (processes, GPUs, machines) may run this on one study at once; see RunBudget.
    """
    device = resolve_device(options.device)
    storage = check_storage(spec, storage_url, heartbeat=options.heartbeat, accept_change=options.accept_change)
    keeper = WeightKeeper(storage_url, options.keep_weights) if options.keep_weights > 0 else None
    checkpoints = writable_checkpoint_root(storage_url)
    events = events or RunEvents()
    source = transfer.load_source(spec.init, storage_url) if spec.init is not None else None  # before the slow part
    warm = warmstart.source_trials(spec, storage_url) if spec.warm_start is not None else None
    data = data_module.load(spec.dataset, device, options.data_dir, progress=events.loading)
    if source is not None:
        transfer.check_source(spec, data, source)
    _check_baselines_fit(spec, data, source)
    storage = storage or cached(open_storage(storage_url, heartbeat=options.heartbeat, on_lost=queue_retry))
    seed = SamplerSeed(spec, options.seed)
    queue = Queue(spec, data, seed.base, source.config if source is not None else None)
    budget = RunBudget(spec, options, options.run_id or uuid.uuid4().hex)
    lock = shared_lock(storage_url, spec.name)

    def begin(study: optuna.Study) -> None:
        queue.begin(study, warm)
        record_run(optuna_private.storage_of(study), optuna_private.study_id(study), budget.run_id, budget.record())
        fail_earlier_start(study)

    try:
        with _opened_for_good(spec, storage, seed, lock, data, options.accept_change, budget.deadline,
                              begin=begin) as study:
            events.study_opened(study, data)
            stop = StopCheck(study, budget.run_id)
            sweep = LostTrialSweep(study, lock, options.heartbeat)

            def at_epoch_end() -> None:
                sweep()
                stop()

            _work(study, make_objective(spec, data, events, checkpoints=checkpoints, on_complete=keeper, source=source,
                                       time_left=budget.seconds_left, at_epoch_end=at_epoch_end),
                  budget, seed, lock, list(callbacks), options.heartbeat, queue, stop)
    finally:
        lock.close()
    return study


def fail_earlier_start(study: optuna.Study) -> int:
    """Under the lock, as a SLURM task starts again (requeued): the trials its earlier start left running are lost,
    since SLURM runs one start of a task at a time (its worker was killed outright: the out-of-memory killer, say).
    They are failed now, and their copies queued to run first, rather than once their heartbeats go stale.
    Returns how many."""
    job = slurm_job()
    if not job.get("restart_count"):
        return 0
    task = f"{job.get('array_job_id', job['job_id'])}" + (f"_{job['array_task_id']}" if "array_task_id" in job else "")
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        ran = record.provenance(trial).slurm or {}
        if ran.get("job_id") == job["job_id"] and ran.get("restart_count", 0) < job["restart_count"]:
            failed += fail_lost(study, optuna_private.trial_id(trial), f"its SLURM task {task} started again (start "
                                                        f"{job['restart_count'] + 1}) while the trial ran")
    return failed


@contextlib.contextmanager
def _opened_for_good(spec: StudySpec, storage: optuna.storages.BaseStorage, seed: SamplerSeed, lock: NoLock,
                     data: data_module.DeviceData, accept_change: bool, deadline: float | None,
                     begin: Callable[[optuna.Study], None]) -> Iterator[optuna.Study]:
    """The study, created once whoever comes first (under the lock); while the run works, Python's cycle
    collector leaves alone what was loaded before it: the imported modules (torch's are some 400,000 objects),
    the data, the study's trials in Optuna's cache. A full collection walks them all, and reading a big study sets
    one off (bench/big_study.py measures what a study's size costs). The study is opened with the collector off,
    so that its young collections do not walk the trials just read either.
    Handed back at the end, so that a process that runs several (the tests, a benchmark) still collects what
    each leaves behind. begin(study) runs under the lock once it is open (Queue.begin). A study lock held by another
    worker until the run's deadline ends the run (LockWaitExpired)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        lock.acquire(deadline)
        try:
            study = open_study(spec, storage, seed.sampler, data=data, accept_change=accept_change)
            begin(study)
            seed.added(len(study.get_trials(deepcopy=False)))
        finally:
            lock.release()
        gc.freeze()
    finally:
        if was_enabled:
            gc.enable()
    try:
        yield study
    finally:
        gc.unfreeze()


def _work(study: optuna.Study, objective, budget: RunBudget, seed: SamplerSeed, lock: NoLock,
          callbacks: list[Any], heartbeat: int, queue: Queue, stop: StopCheck) -> None:
    """Start trials one at a time; the lock is held from the budget check until the trial exists. A stop asked for
    (stopping.py) is raised between trials, while the lock is waited for, or by the trial's training; a stop request
    (`hpsearch stop`) is looked for between trials (stop)."""
    started: list[int] = []  # the number of the trial in progress, while there is one
    view = DecisionView(budget.run_id)

    def objective_in_slot(trial: optuna.Trial) -> float:
        started.append(trial.number)
        seed.started(trial.number)
        record.joined(trial, budget.run_id)
        lock.release()
        return objective(trial)

    while True:
        stopping.check()
        try:
            lock.acquire(budget.deadline)
        except LockWaitExpired as exc:  # the run's time is up: it stops as it would at its deadline, saying why
            log.warning("%s", exc)
            return
        try:
            decision = DONE if stop.requested() else _next_step(study, budget, seed, view, queue)
            if decision == START:
                stopping.check()  # before the trial exists: a baseline or draw just queued waits for the next run
                study.optimize(objective_in_slot, n_trials=1, catch=(TrialFailed,), callbacks=callbacks)
        except StopRequested as exc:  # `hpsearch stop` named this run: its trial stopped at an epoch end
            if started and not exc.discard:
                _requeue_interrupted(study, started[0], lock)
            return
        except KeyboardInterrupt:
            if started:
                _requeue_interrupted(study, started[0], lock)
            raise
        finally:
            started.clear()
            lock.release()
        if decision == DONE:
            return
        if decision == WAIT:
            time.sleep(min(heartbeat, 2))


def _next_step(study: optuna.Study, budget: RunBudget, seed: SamplerSeed, view: DecisionView, queue: Queue) -> str:
    """Under the study lock: fail lost trials (queueing their copies), count, and queue a baseline if one is due
    (baseline_due), else the next start-up draw while the study still wants one (Queue)."""
    trials = study.get_trials(deepcopy=False)
    seed.follow(study, len(trials))
    if fail_lost_trials(study):
        trials = study.get_trials(deepcopy=False)
        seed.added(len(trials))
    view.update(trials)
    slots_left = budget.slots_left(view)
    decision = budget.decide(view, slots_left)
    if decision != START:
        return decision
    if name := baseline_due(view.trials, budget.spec.baselines, budget.run_id, slots_left, datetime.datetime.now(),
                            target=budget.target(view)):
        record.queue_baseline(study, queue.baseline_point(name), name)
    elif not any(t.state == TrialState.WAITING for t in view.trials) and queue.start_up(study, trials):
        seed.added(len(trials) + 1)
    return decision


class Queue:
    """What a worker queues for its next trial, beside Optuna's own draws: a baseline at its point of the space,
    and a new study's start-up trials, cheapest first (cost.py's rule).

    A start-up trial is one the sampler would draw at random before it models the rest (its n_startup_trials):
    instead, the cheapest of cost.DRAWS_PER_START times as many random draws from the space, drawn from the
    study's seed so that every worker holds the same list, queued one at a time, each when the study holds
    that many sampled trials, so none is left waiting once the run stops at its target. Trials copied by
    warm_start count as start-up trials, as the sampler counts them.
    """

    def __init__(self, spec: StudySpec, data: data_module.DeviceData, seed: int | None,
                 architecture: dict[str, Any] | None):
        self.spec, self.data, self.seed, self.architecture = spec, data, seed, architecture
        self.wanted = start_up_trials(spec.sampler.name, spec.sampler.options)
        self.draws: list[dict[str, Any]] | None = None  # drawn when first needed

    def begin(self, study: optuna.Study, warm: list[FrozenTrial] | None) -> None:
        """Under the lock, once the study is open: a study that holds no trial yet gets its warm-start copies."""
        if warm is not None and not study.get_trials(deepcopy=False):
            warmstart.start(study, self.spec, warm, self.architecture)

    def baseline_point(self, name: str) -> dict[str, Any]:
        """The baseline's point of the space, where it lies in it (the trial then records it as an observation
        the sampler learns from: objective.py), else {}."""
        at = space.point(self.spec, BASELINES[name].config(self.architecture), self.architecture)
        return at.params if at is not None else {}

    def start_up(self, study: optuna.Study, trials: list[FrozenTrial]) -> bool:
        """Under the lock: queue the next start-up draw if the study still wants one; whether it did."""
        if self.wanted == 0:
            return False
        sampled = [t for t in trials if not is_baseline(t)]
        if len(sampled) >= self.wanted:
            self.wanted = 0  # for good: trials are never removed
            return False
        if self.draws is None:
            self.draws = cost.start_up_draws(self.spec, self.data, self.wanted, self.seed, self.architecture)
        own = sum(not is_warm_start(t) for t in sampled)
        if own >= len(self.draws):
            return False
        study.enqueue_trial(self.draws[own])
        return True


def _requeue_interrupted(study: optuna.Study, number: int, lock: NoLock) -> None:
    """Queue a copy of an interrupted trial, so the next run resumes it (from its checkpoint). Where the
    storage cannot take it now, say so and let the interruption end the run as it would."""
    try:
        lock.acquire(time.monotonic() + STOPPING_LOCK_WAIT_S)
        trial = study.get_trials(deepcopy=False)[number]
        if trial.state == TrialState.FAIL:
            queue_retry(study, trial)
    except Exception as exc:  # noqa: BLE001 - the run is stopping; its exit status must stay 130 / 143
        log.warning("trial #%d was not queued again (%s): the same command run again searches on without it",
                    number, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _check_baselines_fit(spec: StudySpec, data: data_module.DeviceData, source: transfer.Source | None) -> None:
    """The study file's check where it could not be made on reading the file: an image folder's classes are
    known once it is read, a transfer baseline's architecture once the init: model is loaded."""
    if source is None and plugins.dataset(spec.dataset.name).input_shape is not None:
        return  # checked by search/preflight.py with the dataset's known input and classes
    architecture = source.config if source is not None else None
    for name in spec.baselines:
        if why := fit_problem(BASELINES[name], data.shape, data.num_classes, architecture):
            raise HpsearchError(f"{spec.path}: baselines: {name} does not fit {data.source} "
                                f"({data.num_classes} classes): {why}")
