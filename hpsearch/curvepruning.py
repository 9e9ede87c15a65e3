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
from optuna.trial import FrozenTrial, TrialState, create_trial

from hpsearch import trialrecord as A

def record(trial: optuna.Trial, curve: list[float]) -> None:
    """Store the trial's validation accuracy after each epoch so far (epoch 1 first)."""
    trial.set_user_attr(A.CURVE, list(curve))


def curve(trial: FrozenTrial) -> dict[int, float]:
    """Validation accuracy per epoch of any trial: its intermediate values, or its recorded curve in a
    multi-objective study."""
    return trial.intermediate_values or dict(enumerate(trial.user_attrs.get(A.CURVE, []), start=1))


def should_prune(trial: optuna.Trial) -> bool:
    """The study's pruner's verdict on the trial's recorded curve, judged as in a single-objective study."""
    view = single_objective_view(trial.study)
    judged = view.get_trials(deepcopy=False)[trial.number]
    prune = trial.study.pruner.prune(view, judged)
    written = view.get_trials(deepcopy=False)[trial.number].system_attrs
    if written != judged.system_attrs:
        trial.set_user_attr(A.PRUNER_ATTRS, dict(written))
    return prune


def single_objective_view(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of a multi-objective study as if it had maximised validation accuracy alone: the same
    trials under the same numbers, each with its curve as intermediate values (what plots and pruners read),
    and the same study attributes (confirmations among them)."""
    view = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name=study.study_name,
                               direction="maximize")
    view.add_trials([_single_objective(t) for t in study.get_trials(deepcopy=False)])
    for key, value in study.user_attrs.items():
        view.set_user_attr(key, value)
    return view


def _single_objective(trial: FrozenTrial) -> FrozenTrial:
    return create_trial(state=trial.state, value=trial.values[0] if trial.state == TrialState.COMPLETE else None,
                        params=trial.params, distributions=trial.distributions, user_attrs=trial.user_attrs,
                        intermediate_values=curve(trial), system_attrs=trial.user_attrs.get(A.PRUNER_ATTRS, {}))
