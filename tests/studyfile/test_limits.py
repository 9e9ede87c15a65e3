"""Limits: a trial over one never counts as the best, on the front or as reaching the target."""

from __future__ import annotations

from optuna.trial import create_trial

from hpsearch.results import ranking
from hpsearch.results.trials import first_reaching
from hpsearch.studyfile.schema import load_spec


def test_a_trial_over_a_limit_never_reaches_the_target_nor_ranks(write_study):
    spec = load_spec(write_study(target={"metric": "val_accuracy", "value": 0.9}, limits={"params": 100}))
    over = create_trial(value=0.99, user_attrs={"param_count": 150}, constraints={"params": 50})
    within = create_trial(value=0.95, user_attrs={"param_count": 90}, constraints={"params": -10})
    assert first_reaching([over], spec) is None and ranking.best_trial([over]) is None
    assert first_reaching([over, within], spec) is within and ranking.ranked([over, within]) == [within]
    assert ranking.front([over, within]) == [within]
