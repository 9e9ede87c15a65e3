"""Per-epoch pruning in multi-objective studies, where Optuna refuses it (optuna#3450: trial.report and
trial.should_prune raise NotImplementedError there).

A trial's validation accuracy after each epoch goes into its `val_curve` user attribute, a list whose
k-th entry is epoch k+1's. (Not Optuna's intermediate values: TPE reads those of pruned trials through
study.direction, which a multi-objective study does not have.) To decide, the study's own pruner, as
the study file configures it, is shown a single-objective view of the study: an in-memory study that
maximises validation accuracy and holds every trial of the real one in order (the same numbers, so
Hyperband puts each trial in the same bracket), with its curve as intermediate values and, once
completed, its validation accuracy as its value. What the pruner writes on the trial it judges
(successive halving's and Hyperband's rungs) is kept in the trial's `pruner_attrs` user attribute and
shown to the pruner again from then on, so its decisions are those it would make on a single-objective
study with the same curves.
"""

from __future__ import annotations

import optuna

from hpsearch import trialrecord as A
from hpsearch.results.trials import single_objective_view


def record(trial: optuna.Trial, curve: list[float]) -> None:
    """Store the trial's validation accuracy after each epoch so far (epoch 1 first)."""
    trial.set_user_attr(A.CURVE, list(curve))


def should_prune(trial: optuna.Trial) -> bool:
    """The study's pruner's verdict on the trial's recorded curve, judged as in a single-objective study."""
    view = single_objective_view(trial.study)
    judged = view.get_trials(deepcopy=False)[trial.number]
    prune = trial.study.pruner.prune(view, judged)
    written = view.get_trials(deepcopy=False)[trial.number].system_attrs
    if written != judged.system_attrs:
        trial.set_user_attr(A.PRUNER_ATTRS, dict(written))
    return prune
