"""Pruning a two-objective study epoch by epoch through a single-objective view of its accuracy curves."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch import record
from hpsearch.search import curvepruning
from hpsearch.search.samplers import make_pruner


@pytest.mark.parametrize("pruner", [{"name": "median", "n_startup_trials": 2, "min_epochs": 1},
                                    {"name": "successive_halving", "min_epochs": 1},
                                    {"name": "hyperband", "min_epochs": 1}], ids=lambda p: p["name"])
def test_the_curve_view_prunes_as_the_pruner_does_on_one_objective(pruner):
    """The same curves, told to a single-objective study (trial.report) and to a two-objective one
    (curvepruning), get the same verdict at every epoch; successive halving's rungs carry over."""
    options = {k: v for k, v in pruner.items() if k != "name"}
    single = optuna.create_study(study_name="same", direction="maximize", pruner=make_pruner(pruner["name"], options, 8))
    double = optuna.create_study(study_name="same", directions=["maximize", "minimize"],
                                 pruner=make_pruner(pruner["name"], options, 8))
    rng = random.Random(0)
    verdicts = []
    for _ in range(24):
        one, two = single.ask(), double.ask()
        rate, curve = rng.uniform(0.02, 0.3), []
        for epoch in range(1, 9):
            curve.append(min(1.0, rate * epoch + rng.uniform(-0.05, 0.05)))
            one.report(curve[-1], epoch)
            record.curve_so_far(two, curve)
            verdicts.append(one.should_prune())
            assert curvepruning.should_prune(two) == verdicts[-1], (one.number, epoch)
            if verdicts[-1]:
                single.tell(one, state=TrialState.PRUNED)
                double.tell(two, state=TrialState.PRUNED)
                break
        else:
            single.tell(one, curve[-1])
            double.tell(two, (curve[-1], 1000))
    assert any(verdicts) and not all(verdicts)
