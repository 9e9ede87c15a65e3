"""Which trial is best: the confirmed winner over the luckiest single run, ties broken by the second objective
then the earliest, and a two-objective study's Pareto front."""

from __future__ import annotations

import json

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from hpsearch import record
from hpsearch.record import SeedResult
from hpsearch.results import ranking
from hpsearch.search import confirm
from tests.helpers import invoke, stored_trial


def dominates(a, b) -> bool:
    """a is at least as accurate and as small as b, and better on one."""
    (acc_a, size_a), (acc_b, size_b) = a.values, b.values
    return acc_a >= acc_b and size_a <= size_b and (acc_a > acc_b or size_a < size_b)


def test_a_two_objective_study_prunes_and_its_front_is_non_dominated(front_study):
    _, _, study = front_study
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned and len(completed) >= 3, [t.state for t in study.trials]
    for trial in pruned:
        assert trial.user_attrs["epochs"] < 4 and "test_accuracy" not in trial.user_attrs
        assert len(trial.user_attrs["val_curve"]) == trial.user_attrs["epochs"]
    for trial in completed:
        assert trial.values[1] == trial.user_attrs["param_count"] and len(trial.user_attrs["val_curve"]) == 4
    front = ranking.front(study.trials)
    assert front and front[0] == ranking.best_trial(study.trials)
    assert [ranking.val_accuracy(t) for t in front] == sorted((ranking.val_accuracy(t) for t in front), reverse=True)
    for trial in front:
        assert not any(dominates(other, trial) for other in completed)
    on_front = {t.number for t in front}
    for trial in (t for t in completed if t.number not in on_front):
        assert any(dominates(point, trial) for point in front)


def test_best_and_report_agree_on_ties_the_earliest_trial_wins(storage):
    study = optuna.create_study(study_name="ties", storage=storage, direction="maximize")
    study.set_user_attr("dataset", "digits")  # as hpsearch marks the studies it makes
    for value in (0.90, 0.95, 0.95):
        study.add_trial(stored_trial(value))
    best = json.loads(invoke("best", "--study", "ties", "--storage", storage, "--format", "json").stdout)["best"]
    assert best["number"] == 1
    assert "| #1 | searched #1 | hpsearch |" in invoke("report", "--study", "ties", "--storage", storage).stdout


def confirmed_trial(number: int, value: float, mean: float | None, **attrs) -> optuna.trial.FrozenTrial:
    """A completed trial numbered `number`, confirmed with the mean validation accuracy `mean` (None: not confirmed)."""
    trial = optuna.trial.create_trial(value=value, user_attrs=attrs)
    trial.number = number
    if mean is not None:
        trial = record.with_confirmation(trial, confirm.summarize(
            [SeedResult(s, mean + d, mean, 1.0) for s, d in ((1, -0.01), (2, 0.01))]))
    return trial


def test_the_confirmed_winner_is_the_best_mean_over_new_seeds_not_the_luckiest_single_run():
    lucky, steady, also, unconfirmed = (confirmed_trial(0, 0.99, 0.90), confirmed_trial(1, 0.97, 0.95),
                                        confirmed_trial(2, 0.96, 0.95), confirmed_trial(3, 0.995, None))
    trials = [lucky, steady, also, unconfirmed]
    assert ranking.best_trial(trials) is steady  # of equal means, the earliest
    assert ranking.confirmed(trials) == [steady, also, lucky]
    assert ranking.single_run_best(trials) is unconfirmed and ranking.best_trial([unconfirmed]) is unconfirmed
    assert ranking.best_trial([]) is None


def test_equally_accurate_trials_rank_by_the_second_objective_then_the_earliest():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for accuracy, size in ((0.9, 300), (0.95, 900), (0.95, 400), (0.95, 400)):
        study.add_trial(optuna.trial.create_trial(values=[accuracy, size], user_attrs={"param_count": size}))
    assert [t.number for t in ranking.ranked(study.trials)] == [2, 3, 1, 0]
    assert [t.number for t in ranking.front(study.trials)] == [2, 3, 0]  # exact duplicates both stay


def test_a_trial_without_the_measure_is_left_off_the_front():
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs={"param_count": 100}))
    study.add_trial(optuna.trial.create_trial(value=0.95))  # an older trial, no param_count
    assert [t.number for t in ranking.front(study.trials)] == [0] and ranking.best_trial(study.trials).number == 1


def test_study_trials_put_each_confirmation_back_on_a_copy_of_its_trial(storage):
    study = optuna.create_study(study_name="confirmed", storage=storage, direction="maximize")
    for value in (0.9, 0.8):
        study.add_trial(optuna.trial.create_trial(value=value))
    summary = confirm.summarize([SeedResult(1, 0.85, 0.8, 1.0)])
    record.store_confirmation(study, 1, summary)
    assert study.user_attrs["confirm #1"] == summary.as_dict()  # where earlier versions stored it too
    first, second = ranking.study_trials(study)
    assert record.confirmation(first) is None and record.confirmation(second) == summary
    assert ranking.confirmed_mean(second) == 0.85 and record.confirmation(study.trials[1]) is None  # stored: untouched
