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

The view is made once per process and study and kept in step before each verdict: new trials are added,
unfinished ones brought up to date in what a pruner reads (state, value, curve, pruner attributes), and
finished ones, which no longer change, are left alone: an epoch's verdict costs what changed since the last,
not a copy of the whole study.
"""

from __future__ import annotations

import weakref

import optuna
from optuna.trial import FrozenTrial

from hpsearch import record
from hpsearch.results.trials import single_objective_trial, single_objective_view
from hpsearch.storage import optuna_private


def should_prune(trial: optuna.Trial) -> bool:
    """The study's pruner's verdict on the trial's recorded curve, judged as in a single-objective study."""
    view = _views.get(trial.study)
    if view is None:
        view = _views[trial.study] = _View(trial.study)
    view.update(trial.study.get_trials(deepcopy=False))
    judged = view.study.get_trials(deepcopy=False)[trial.number]
    prune = trial.study.pruner.prune(view.study, judged)
    written = view.study.get_trials(deepcopy=False)[trial.number]
    if (state := record.optuna_state(written)) != record.optuna_state(judged):
        record.pruner_wrote(trial, state)
    return prune


class _View:
    """The single-objective view of one study, kept in step with it (see the module docstring)."""

    def __init__(self, study: optuna.Study):
        self.study = single_objective_view(study)
        self.unfinished = {t.number for t in self.study.get_trials(deepcopy=False) if not t.state.is_finished()}

    def update(self, trials: list[FrozenTrial]) -> None:
        """Bring the view to `trials`, the real study's trials now."""
        shown = self.study.get_trials(deepcopy=False)
        for number in sorted(self.unfinished):
            self._catch_up(shown[number], single_objective_trial(trials[number]))
        for trial in trials[len(shown):]:
            self.study.add_trial(single_objective_trial(trial))  # numbered in order, as in the real study
            if not trial.state.is_finished():
                self.unfinished.add(trial.number)

    def _catch_up(self, shown: FrozenTrial, now: FrozenTrial) -> None:
        """Write onto the view's unfinished trial `shown` what changed in `now`, the trial as a fresh view holds it."""
        optuna_private.catch_up(self.study, shown, now)
        if now.state.is_finished():
            self.unfinished.discard(now.number)


_views: weakref.WeakKeyDictionary[optuna.Study, _View] = weakref.WeakKeyDictionary()
