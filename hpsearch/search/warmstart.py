"""A new study started with another study's trials (`warm_start:`): its sampler learns from them at once.

Each finished trial of the other study whose config lies in this study's space (training/space.point) is
added once, when the study is new, with Optuna's `add_trials`: the same config at the same point of this
space, recorded with this space's distributions, so that TPE, GP and the rest model it like their own; its
value (validation accuracy) where it completed; no curve, so the pruner judges this study's trials by this
study's own. A copy carries `warm_start` (where it came from): it never counts towards a run's totals, the
target, the best trial, time to target or a report's counts (results/trials.py, results/ranking.py), and it
is not a baseline, so a baseline it was in the other study still runs here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import record
from hpsearch.errors import HpsearchError
from hpsearch.search.studystore import load_existing
from hpsearch.storage import mask
from hpsearch.studyfile import params as P
from hpsearch.studyfile.limits import MEASURES
from hpsearch.studyfile.types import StudySpec
from hpsearch.training import space


def source_trials(spec: StudySpec, storage_url: str) -> list[FrozenTrial]:
    """The finished trials of the study `warm_start:` names, read before any data is: a study that is not
    there, or that was made for another dataset, is refused with one line (the storage's password masked)."""
    url = spec.warm_start.storage or storage_url
    try:
        study = load_existing(spec.warm_start.study, url)
    except HpsearchError as exc:
        raise HpsearchError(f"{spec.path}: warm_start: {exc}") from None
    made_for = record.study_record(study).dataset
    if made_for is not None and made_for != spec.dataset.name:
        raise HpsearchError(f"{spec.path}: warm_start: study {spec.warm_start.study!r} in {mask(url)} was made for "
                            f"dataset {made_for}, this study is on {spec.dataset.name}: its accuracies would mislead "
                            "the sampler; name a study of the same dataset")
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def copies(spec: StudySpec, trials: list[FrozenTrial], architecture: Mapping[str, Any] | None = None
           ) -> list[FrozenTrial]:
    """The trials that lie in this study's space, as this study records them (see the module docstring); a trial
    without a measure this study's objectives or limits need is left out."""
    made = []
    for trial in trials:
        config = record.config(trial)
        at = None if config is None else space.point(spec, P.complete(config), architecture)
        if at is not None and (copy := _copy(spec, trial, at)) is not None:
            made.append(copy)
    return made


def _copy(spec: StudySpec, trial: FrozenTrial, at: optuna.trial.FixedTrial) -> FrozenTrial | None:
    bounds = {name: getattr(spec.limits, name) for name in MEASURES if getattr(spec.limits, name) is not None}
    measures = {name: record.measured(trial, name) for name in {*spec.objectives[1:], *bounds}}
    if None in measures.values():
        return None
    values = ([trial.values[0], *(measures[name] for name in spec.objectives[1:])]
              if trial.state == TrialState.COMPLETE else None)
    return record.warm_start_copy(trial, spec.warm_start.study, state=trial.state, values=values, params=at.params,
                                  distributions=at.distributions,
                                  constraints={name: measures[name] - bound for name, bound in bounds.items()})


def start(study: optuna.Study, spec: StudySpec, trials: list[FrozenTrial],
          architecture: Mapping[str, Any] | None = None) -> int:
    """Under the study lock, on a study that holds no trial yet: add the copies; how many."""
    made = copies(spec, trials, architecture)
    study.add_trials(made)
    return len(made)
