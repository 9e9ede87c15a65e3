"""Create or load a study on its storage, run trials on it, and summarise what it holds.

Optuna does the coordination; this module only seeds the sampler, records what the study was
made from, holds the study lock where trials are counted and started, and stops at the target.
"""

from __future__ import annotations

import datetime
import logging
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from hpsearch import trialrecord as A
from hpsearch import data as data_module, params as P, ranking, space, transfer
from hpsearch.artifacts import WeightKeeper
from hpsearch.baselines import BASELINES, fit_problem
from hpsearch.checkpoint import checkpoint_root
from hpsearch.defaults import DEFAULT_HEARTBEAT_S, DEFAULT_KEEP
from hpsearch.errors import HpsearchError
from hpsearch.limits import MEASURES, describe
from hpsearch.objective import RunEvents, TrialFailed, make_objective
from hpsearch.samplers import make_pruner, make_sampler
from hpsearch.signals import hold_signals
from hpsearch.spectypes import StudySpec
from hpsearch.storage import (NoLock, check_sqlite_folder, fail_lost_trials, is_new_sqlite, mask, open_existing,
                              open_storage, queue_retry, shared_lock, sqlite_file)

log = logging.getLogger(__name__)


def directions(spec: StudySpec) -> list[str]:
    """Validation accuracy is maximised; a second objective (parameters, training seconds) minimised."""
    return ["maximize"] + ["minimize"] * (len(spec.objectives) - 1)


def open_study(spec: StudySpec, storage: str | optuna.storages.BaseStorage) -> optuna.Study:
    """The study named spec.name on the storage, created if new (maximising validation accuracy, or with
    two objectives a multi-objective study whose result is a Pareto front).

    Its sampler is unseeded until a SamplerSeed seeds it, before the first trial this process starts.
    """
    if isinstance(storage, str):
        storage = open_storage(storage)
    pruner = make_pruner(spec.pruner.name, spec.pruner.options, spec.budget.epochs)
    study = optuna.create_study(storage=storage, study_name=spec.name, directions=directions(spec), pruner=pruner,
                                sampler=make_sampler(spec.sampler.name, spec.sampler.options, None),
                                load_if_exists=True)
    # as this run holds them
    study.set_user_attr(A.STUDY_LIMITS, {name: getattr(spec.limits, name) for name in MEASURES})
    if not study.get_trials(deepcopy=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since Optuna 3.2
            study.set_metric_names(list(spec.objectives))
        study.set_user_attr(A.STUDY_DATASET, spec.dataset.name)
        study.set_user_attr(A.STUDY_EPOCHS, spec.budget.epochs)
        study.set_user_attr(A.STUDY_SPEC_PATH, spec.path)
        # What `hpsearch export` needs to rebuild a trial without the study file: split and seed.
        study.set_user_attr(A.STUDY_SPLIT, spec.dataset.recorded())
        study.set_user_attr(A.STUDY_SEED, spec.seed)
    return study


def _describe_split(split: dict, seed: int) -> str:
    """'dataset.validation 0.15, dataset.test 0.2, dataset.split_seed 0, seed 0' (an image folder's path and
    size too)."""
    return ", ".join([f"dataset.{key} {value}" for key, value in split.items() if key != "name"] + [f"seed {seed}"])


def _check_existing(spec: StudySpec, storage: optuna.storages.BaseStorage) -> None:
    """Refuse to add trials to a same-named study that was made for something else."""
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        return
    stored = [d.name.lower() for d in study.directions]
    if stored != directions(spec) or study.metric_names not in (None, list(spec.objectives)):
        made = ", ".join(study.metric_names or ()) or f"directions {', '.join(stored)}"
        raise HpsearchError(f"study {spec.name!r} in the storage was made for objectives {made}, the file says "
                            f"{', '.join(spec.objectives)}: rename the study (name: in the file) or use another "
                            "--storage")
    attrs = study.user_attrs  # one read: each is a query
    made_for = attrs.get(A.STUDY_DATASET)
    if made_for is not None and made_for != spec.dataset.name:
        raise HpsearchError(f"study {spec.name!r} in the storage was made for dataset {made_for}, the file says "
                            f"{spec.dataset.name}: rename the study (name: in the file) or use another --storage")
    made_with = {name: bound for name, bound in (attrs.get(A.STUDY_LIMITS) or {}).items() if bound is not None}
    wanted = {name: getattr(spec.limits, name) for name in MEASURES if getattr(spec.limits, name) is not None}
    if made_with != wanted and study.get_trials(deepcopy=False):
        # Each trial's constraint is its measure minus the limit it ran under: other limits would leave the
        # old trials judged by the old ones (and GP refuses trials with different constraints).
        raise HpsearchError(f"study {spec.name!r} in the storage was made with limits {describe(made_with)}, the "
                            f"file says {describe(wanted)}: its trials were judged by the old limits; rename the "
                            "study (name: in the file) or use another --storage")
    made_on = attrs.get(A.STUDY_SPLIT), attrs.get(A.STUDY_SEED)
    if None not in made_on and made_on != (spec.dataset.recorded(), spec.seed) and study.get_trials(deepcopy=False):
        # export rebuilds every trial with the split and seed recorded here: trials run on others would not retrain
        # to their numbers, and accuracies measured on different validation sets would be ranked together.
        given = _describe_split(spec.dataset.recorded(), spec.seed)
        raise HpsearchError(f"study {spec.name!r} in the storage was made with {_describe_split(*made_on)}, the file "
                            f"says {given}: its trials were trained and measured on those; rename the study (name: "
                            "in the file) or use another --storage")


BASELINE_SHARE = 0.5  # while baselines remain, at most this share of a run's trial time goes to them


def is_baseline(trial: FrozenTrial) -> bool:
    """A fixed trial of one of the reports' models (queued when study.baseline_due said so), not a sampled one."""
    return A.BASELINE in trial.user_attrs


def _trial_seconds(trial: FrozenTrial, now: datetime.datetime) -> float:
    """Wall seconds a trial ran, or has run so far."""
    if trial.datetime_start is None:
        return 0.0
    return ((trial.datetime_complete or now) - trial.datetime_start).total_seconds()


def baseline_due(trials: list[FrozenTrial], baselines: tuple[str, ...], run_id: str, slots_left: int,
                 now: datetime.datetime) -> str | None:
    """The baseline the next trial should run, or None for a sampled one.

    Baselines interleave with the search instead of going first: a baseline is due once the search has
    had more of this run's time than the baselines (so the first trial is sampled, and the search keeps
    at least 1 - BASELINE_SHARE of the time while baselines remain), or when only as many trials are left
    in the run's budget as baselines, so that all of them still run within it. A waiting trial (a retried
    copy, its checkpoint ready) always goes first: Optuna starts it before anything new.
    """
    if any(t.state == TrialState.WAITING for t in trials):
        return None
    queued = {t.user_attrs.get(A.BASELINE) for t in trials}
    missing = [name for name in baselines if name not in queued]
    if not missing:
        return None
    if slots_left <= len(missing):
        return missing[0]
    ours = [t for t in trials if t.user_attrs.get(A.RUN) == run_id]
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

    def follow(self, study: optuna.Study, count: int) -> None:
        """Under the lock, before this process adds anything: reseed if another process added trials."""
        if count != self.known and self.base is not None:
            seed = (self.base + count) % (P.MAX_SEED + 1)  # a seed near the top wraps, as a sampler takes 32 bits
            study.sampler = make_sampler(self.spec.sampler.name, self.spec.sampler.options, seed)
        self.known = count

    def added(self, count: int) -> None:
        """This process brought the count to `count` (queued copies)."""
        self.known = count

    def started(self, number: int) -> None:
        """This process started trial `number`: a new one, or one that was waiting."""
        self.known = max(self.known or 0, number + 1)


def load_existing(name: str, storage_url: str) -> optuna.Study:
    storage = open_existing(storage_url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if name not in names:
        raise HpsearchError(f"no study named {name!r} in {mask(storage_url)} (studies there: "
                            f"{', '.join(names) or 'none'}; --storage chooses another)")
    return optuna.load_study(study_name=name, storage=storage)


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise HpsearchError("--device cuda: no CUDA device is visible to torch (use --device cpu or auto)")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def target_metric(trial: FrozenTrial, metric: str) -> float | None:
    """The trial's value of a target metric, or None if it has none that counts (not completed, or over a limit)."""
    if not ranking.counts(trial):
        return None
    return trial.user_attrs.get(metric) if metric != "val_accuracy" else ranking.val_accuracy(trial)


def meets_target(trial: FrozenTrial, spec: StudySpec) -> bool:
    """Whether the trial completed within limits at or above the study's target (False without a target)."""
    if spec.target is None:
        return False
    value = target_metric(trial, spec.target.metric)
    return value is not None and value >= spec.target.value


def first_reaching(trials: list[FrozenTrial], spec: StudySpec) -> FrozenTrial | None:
    """The first sampled trial of `trials` that meets the study's target: the target is the search's to reach.
    A baseline that meets it is reported (baseline_note), and the search goes on."""
    return next((t for t in trials if not is_baseline(t) and meets_target(t, spec)), None)


def baseline_note(trial: FrozenTrial, spec: StudySpec) -> str | None:
    """'baseline seed002-cnn-q9 already meets the target: test 99.17%' for a baseline that meets it, else None."""
    if not (is_baseline(trial) and meets_target(trial, spec)):
        return None
    metric = spec.target.metric
    return (f"baseline {trial.user_attrs[A.BASELINE]} already meets the target: "
            f"{metric.removesuffix('_accuracy')} {target_metric(trial, metric):.2%}")


@dataclass(frozen=True)
class RunOptions:
    n_trials: int | None = None  # trials this run adds; None: the study's budget.trials
    until: int | None = None  # instead: run until the study holds this many finished trials
    timeout: float | None = None  # seconds; None: the study's budget.timeout
    device: str = "auto"
    seed: int | None = None
    stop_at_target: bool = True
    data_dir: Path | None = None
    heartbeat: int = DEFAULT_HEARTBEAT_S
    run_id: str | None = None  # shared by the workers of one run (see workers.py); None: a new run
    keep_weights: int = DEFAULT_KEEP  # the best this many completed trials keep their weights (0: none)


START, WAIT, DONE = "start", "wait", "done"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


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

    def _counted(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """This run's trials, a retried trial counted once: its copy."""
        retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
        return [t for t in trials if t.user_attrs.get(A.RUN) == self.run_id and t.number not in retried]

    def slots_left(self, trials: list[FrozenTrial]) -> int:
        """How many more trials this run may start."""
        if self.options.until is None:
            return self.n_trials - len(self._counted(trials))
        return self.options.until - sum(t.state in FINISHED or t.state == TrialState.RUNNING for t in trials)

    def decide(self, trials: list[FrozenTrial], slots_left: int) -> str:
        """START, WAIT or DONE, given the study's trials and this run's slots_left(trials)."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return DONE
        ours = [t for t in trials if t.user_attrs.get(A.RUN) == self.run_id]
        if self.options.stop_at_target and first_reaching(ours, self.spec) is not None:
            return DONE
        if slots_left > 0:
            return START
        if self.options.until is None:
            # Another worker's trial may yet be lost, and its copy must then run in this run.
            return WAIT if any(t.state == TrialState.RUNNING for t in self._counted(trials)) else DONE
        if sum(t.state in FINISHED for t in trials) >= self.options.until:
            return DONE
        return WAIT  # the running trials will finish, fail (a slot frees up) or go stale (and be retried)


def run(spec: StudySpec, storage_url: str, options: RunOptions, events: RunEvents | None = None,
        callbacks: list[Any] = ()) -> optuna.Study:
    """One worker: add trials to the study until the run's budget, timeout or target says stop.

    Several workers (processes, GPUs, machines) may run this on one study at once; see RunBudget.
    """
    device = resolve_device(options.device)
    storage = None
    if is_new_sqlite(storage_url):  # made once the data is read: a run that cannot start writes nothing
        check_sqlite_folder(sqlite_file(storage_url))
    else:  # fail fast, before reading any data
        storage = open_storage(storage_url, heartbeat=options.heartbeat)
        _check_existing(spec, storage)
    keeper = WeightKeeper(storage_url, options.keep_weights) if options.keep_weights > 0 else None
    events = events or RunEvents()
    source = transfer.load_source(spec.init, storage_url) if spec.init is not None else None  # before the slow part
    data = data_module.load(spec.dataset, device, options.data_dir, progress=events.loading)
    if source is not None:
        transfer.check_source(spec, data, source)
    _check_baselines_fit(spec, data, source)
    storage = storage or open_storage(storage_url, heartbeat=options.heartbeat)
    lock = shared_lock(storage_url, spec.name)
    try:
        lock.acquire()
        try:  # creating the study once, whoever comes first
            study = open_study(spec, storage)
        finally:
            lock.release()
        events.study_opened(study, data)
        run_id = options.run_id or uuid.uuid4().hex
        _work(study, make_objective(spec, data, events, checkpoints=checkpoint_root(storage_url),
                                   on_complete=keeper, source=source),
              RunBudget(spec, options, run_id), SamplerSeed(spec, options.seed), lock, list(callbacks),
              options.heartbeat)
    finally:
        lock.close()
    return study


def _work(study: optuna.Study, objective, budget: RunBudget, seed: SamplerSeed, lock: NoLock,
          callbacks: list[Any], heartbeat: int) -> None:
    """Start trials one at a time; the lock is held from the budget check until the trial exists."""
    started: list[int] = []  # the number of the trial in progress, while there is one

    def objective_in_slot(trial: optuna.Trial) -> float:
        started.append(trial.number)
        seed.started(trial.number)
        trial.set_user_attr(A.RUN, budget.run_id)
        lock.release()
        return objective(trial)

    while True:
        lock.acquire()
        try:
            decision = _next_step(study, budget, seed)
            if decision == START:
                study.optimize(objective_in_slot, n_trials=1, catch=(TrialFailed,), callbacks=callbacks)
        except KeyboardInterrupt:
            hold_signals()
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


def _next_step(study: optuna.Study, budget: RunBudget, seed: SamplerSeed) -> str:
    """Under the study lock: fail lost trials (queueing their copies), count, and queue a baseline if one is due
    (baseline_due)."""
    trials = study.get_trials(deepcopy=False)
    seed.follow(study, len(trials))
    if fail_lost_trials(study):
        trials = study.get_trials(deepcopy=False)
        seed.added(len(trials))
    slots_left = budget.slots_left(trials)
    decision = budget.decide(trials, slots_left)
    if decision == START and (name := baseline_due(trials, budget.spec.baselines, budget.run_id, slots_left,
                                                   datetime.datetime.now())):
        study.enqueue_trial({}, user_attrs={A.BASELINE: name})
    return decision


def _requeue_interrupted(study: optuna.Study, number: int, lock: NoLock) -> None:
    """Queue a copy of an interrupted trial, so the next run resumes it (from its checkpoint). Where the
    storage cannot take it now, say so and let the interruption end the run as it would."""
    try:
        lock.acquire()
        trial = study.get_trials(deepcopy=False)[number]
        if trial.state == TrialState.FAIL:
            queue_retry(study, trial)
    except Exception as exc:  # noqa: BLE001 - the run is stopping; its exit status must stay 130 / 143
        log.warning("trial #%d was not queued again (%s): the same command run again searches on without it",
                    number, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _check_baselines_fit(spec: StudySpec, data: data_module.DeviceData, source: transfer.Source | None) -> None:
    """The study file's check, now with the data's real classes (an imagefolder's) and the init: model."""
    architecture = source.config if source is not None else None
    for name in spec.baselines:
        if why := fit_problem(BASELINES[name], data.shape, data.num_classes, architecture):
            raise HpsearchError(f"{spec.path}: baselines: {name} does not fit {data.source} "
                                f"({data.num_classes} classes): {why}")


def summarize_trial(trial: FrozenTrial) -> dict[str, Any]:
    """What a reader needs of one trial, in a form that prints as JSON or YAML."""
    attrs = trial.user_attrs
    return {
        "number": trial.number,
        "state": trial.state.name,
        "val_accuracy": ranking.val_accuracy(trial) if trial.state == TrialState.COMPLETE else None,
        "test_accuracy": attrs.get(A.TEST_ACCURACY),
        "param_count": attrs.get(A.PARAM_COUNT),
        "epochs": attrs.get(A.EPOCHS),
        "seconds": attrs.get(A.SECONDS),
        "train_seconds": attrs.get(A.TRAIN_SECONDS),
        "device": attrs.get(A.DEVICE),
        "baseline": attrs.get(A.BASELINE),
        "params": space.stored_params(trial.params),
        "config": attrs.get(A.CONFIG, space.stored_params(trial.params)),
        "confirm": attrs.get(A.CONFIRM),
    }


def _versus(trials: list[FrozenTrial]) -> dict[str, Any] | None:
    """The best sampled trial and the best baseline, each by ranking.ranked (None: a study without baselines)."""
    if not any(is_baseline(t) for t in trials):
        return None
    ranked = ranking.ranked(trials)
    searched = next((t for t in ranked if not is_baseline(t)), None)
    baseline = next((t for t in ranked if is_baseline(t)), None)
    return {key: summarize_trial(t) if t else None for key, t in (("searched", searched), ("baseline", baseline))}


def objectives(study: optuna.Study) -> list[str]:
    """The study's objectives as its study file named them: [val_accuracy], or val_accuracy and a measure."""
    return study.metric_names or ["val_accuracy"]


def summarize(study: optuna.Study) -> dict[str, Any]:
    """The study's counts by state, its limits, and its best trial by ranking.best_trial (None if none
    counts), with the single-run best where confirmation chose another; a multi-objective study adds its
    front (ranking.front), whose most accurate point is the best.

    `trials` counts the trials that ran or run now; a queued (WAITING) one has not run yet.
    """
    trials = ranking.study_trials(study)
    counts = {state.name.lower(): sum(t.state == state for t in trials)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
                            TrialState.WAITING)}
    best, single = ranking.best_trial(trials), ranking.single_run_best(trials)
    summary = {"study": study.study_name, "trials": len(trials) - counts["waiting"], **counts,
               "limits": {k: v for k, v in study.user_attrs.get(A.STUDY_LIMITS, {}).items() if v is not None},
               "over_limit": sum(A.OVER_LIMIT in t.user_attrs for t in trials),
               "best": summarize_trial(best) if best else None,
               "single_run_best": None if single is None or single is best else summarize_trial(single),
               "versus": _versus(trials)}
    if len(names := objectives(study)) > 1:
        summary["objectives"] = names
        summary["front"] = [summarize_trial(t) for t in ranking.front(trials, against=names[1])]
    return summary
