"""Create or load a study on its storage, run trials on it, and summarise what it holds.

Optuna does the coordination; this module only chooses the sampler seed, records what the study
was made from, and stops at the study's target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from hpsearch import data as data_module, transfer
from hpsearch.baselines import BASELINES, fit_problem
from hpsearch.errors import HpsearchError
from hpsearch.objective import RunEvents, TrialFailed, make_objective
from hpsearch.samplers import make_pruner, make_sampler
from hpsearch.spec import StudySpec
from hpsearch.storage import DEFAULT_HEARTBEAT_S, mask, open_storage


def open_study(spec: StudySpec, storage: str | optuna.storages.BaseStorage, *,
               seed: int | None = None) -> optuna.Study:
    """The study named spec.name on the storage, created if new (maximising validation accuracy).

    The sampler is seeded with seed + the number of trials already stored: a resumed run is as
    repeatable as the first, without replaying the first run's random draws.
    """
    if isinstance(storage, str):
        storage = open_storage(storage)
    _check_existing(spec, storage)
    pruner = make_pruner(spec.pruner.name, spec.pruner.options, spec.budget.epochs)
    study = optuna.create_study(storage=storage, study_name=spec.name, direction="maximize", pruner=pruner,
                                load_if_exists=True)
    existing = len(study.get_trials(deepcopy=False))
    base_seed = seed if seed is not None else spec.sampler.options.get("seed")
    study.sampler = make_sampler(spec.sampler.name, spec.sampler.options,
                                 None if base_seed is None else base_seed + existing)
    if existing == 0:
        study.set_user_attr("dataset", spec.dataset.name)
        study.set_user_attr("epochs", spec.budget.epochs)
        study.set_user_attr("spec_path", spec.path)
    return study


def _check_existing(spec: StudySpec, storage: optuna.storages.BaseStorage) -> None:
    """Refuse to add trials to a same-named study that was made for something else."""
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        return
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise HpsearchError(f"study {spec.name!r} in the storage minimises; hpsearch studies maximise accuracy: "
                            "rename the study (name: in the file) or use another --storage")
    made_for = study.user_attrs.get("dataset")
    if made_for is not None and made_for != spec.dataset.name:
        raise HpsearchError(f"study {spec.name!r} in the storage was made for dataset {made_for}, the file says "
                            f"{spec.dataset.name}: rename the study (name: in the file) or use another --storage")


def finished_count(study: optuna.Study) -> int:
    """Trials that produced a result (complete or pruned): what --until counts."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def enqueue_baselines(study: optuna.Study, spec: StudySpec) -> list[str]:
    """Queue the study's baselines that no earlier run queued, ahead of the sampler's trials."""
    queued = {t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False)}
    missing = [name for name in spec.baselines if name not in queued]
    for name in missing:
        study.enqueue_trial({}, user_attrs={"baseline": name})
    return missing


def load_existing(name: str, storage_url: str) -> optuna.Study:
    storage = open_storage(storage_url)
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
    """The trial's value of a target metric, or None if it has none (not completed)."""
    if trial.state != TrialState.COMPLETE:
        return None
    return trial.user_attrs.get(metric) if metric != "val_accuracy" else trial.value


def reached_target(study: optuna.Study, spec: StudySpec) -> FrozenTrial | None:
    """The first completed trial that meets the target, if any."""
    if spec.target is None:
        return None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        value = target_metric(trial, spec.target.metric)
        if value is not None and value >= spec.target.value:
            return trial
    return None


@dataclass(frozen=True)
class RunOptions:
    n_trials: int | None = None  # None: the study's budget.trials
    until: int | None = None  # run until the study holds this many finished trials (overrides n_trials)
    timeout: float | None = None  # seconds; None: the study's budget.timeout
    device: str = "auto"
    seed: int | None = None
    stop_at_target: bool = True
    data_dir: Path | None = None
    heartbeat: int = DEFAULT_HEARTBEAT_S


def run(spec: StudySpec, storage_url: str, options: RunOptions, events: RunEvents | None = None,
        callbacks: list[Any] = ()) -> optuna.Study:
    """Add trials to the study until n_trials ran, the timeout passed, or a trial of this run hits the target."""
    device = resolve_device(options.device)
    storage = open_storage(storage_url, heartbeat=options.heartbeat)  # fail fast, before reading any data
    events = events or RunEvents()
    source = transfer.load_source(spec.init, storage_url) if spec.init is not None else None  # before the slow part
    data = data_module.load(spec.dataset, device, options.data_dir, progress=events.progress)
    if source is not None:
        transfer.check_source(spec, data, source)
    _check_baselines_fit(spec, data, source)
    study = open_study(spec, storage, seed=options.seed)  # only now is anything written
    enqueue_baselines(study, spec)
    events.study_opened(study, data)
    all_callbacks = list(callbacks)
    if options.stop_at_target and spec.target is not None:
        def stop_at_target(study: optuna.Study, trial: FrozenTrial) -> None:
            value = target_metric(trial, spec.target.metric)
            if value is not None and value >= spec.target.value:
                study.stop()

        all_callbacks.append(stop_at_target)
    n_trials = options.n_trials or spec.budget.trials
    if options.until is not None:
        n_trials = options.until - finished_count(study)
        if n_trials <= 0:
            return study
    study.optimize(make_objective(spec, data, events, source), n_trials=n_trials,
                   timeout=options.timeout or spec.budget.timeout, catch=(TrialFailed,),
                   callbacks=all_callbacks, gc_after_trial=False)
    return study


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
        "val_accuracy": trial.value,
        "test_accuracy": attrs.get("test_accuracy"),
        "param_count": attrs.get("param_count"),
        "epochs": attrs.get("epochs"),
        "seconds": attrs.get("seconds"),
        "device": attrs.get("device"),
        "params": trial.params,
        "config": attrs.get("config", trial.params),
    }


def summarize(study: optuna.Study) -> dict[str, Any]:
    """The study's counts by state and its best trial (None if no trial completed)."""
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(completed, key=lambda t: t.value) if completed else None
    return {"study": study.study_name, "trials": len(trials), **counts,
            "best": summarize_trial(best) if best else None}
