"""What a study holds, read back: the summary `best` prints, and a two-objective study seen as single-objective."""

from __future__ import annotations

import optuna

from hpsearch import record
from hpsearch.record import SeedResult
from hpsearch.results import ranking
from hpsearch.results.trials import describe_stop_rules, single_objective_view, stop_rules_with, summarize
from hpsearch.search import confirm
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.schema import load_spec


def test_summary_counts_states_and_picks_the_best_by_validation(write_study, storage):
    study = run(load_spec(write_study()), storage, RunOptions(device="cpu"))
    summary = summarize(study)
    assert summary["trials"] == summary["complete"] == 3
    assert summary["best"]["val_accuracy"] == max(t.value for t in study.trials)


def test_the_curve_view_keeps_the_study_attributes_so_plots_mark_the_confirmed_winner():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for accuracy, size in ((0.9, 1000), (0.8, 500)):
        study.add_trial(optuna.trial.create_trial(values=[accuracy, size], user_attrs={"param_count": size}))
    record.store_confirmation(study, 1, confirm.summarize([SeedResult(1, 0.85, 0.85)]))
    record.store_confirmation(study, 0, confirm.summarize([SeedResult(1, 0.7, 0.7)]))
    view = single_objective_view(study)
    assert ranking.best_trial(ranking.study_trials(view)).number == 1  # the single-run best is #0


def test_the_stop_rules_say_which_rule_ended_the_runs_from_which_trial_on(write_study):
    val = load_spec(write_study(target={"metric": "val_accuracy", "value": 0.9}))
    test = load_spec(write_study(target={"metric": "test_accuracy", "value": 0.9, "test_set_stops_the_search": "why"}))
    made = stop_rules_with(None, val, 0)
    assert made == [{"from_trial": 0, "metric": "val_accuracy"}] and stop_rules_with(made, val, 7) is None
    assert describe_stop_rules(made) == ("a run stops when a sampled trial's validation accuracy meets the target; "
                                         "its test accuracy is reported beside it, never used to stop")
    older = ("an older hpsearch, whose runs stopped on the target's metric (test accuracy unless the study file named "
             "val_accuracy), so the test set may have decided when they ended")
    assert describe_stop_rules(None) == f"not recorded: stored by {older}"
    reopened = stop_rules_with(stop_rules_with(None, val, 3), test, 5)  # an old study run on, then a test target
    assert describe_stop_rules(reopened) == (
        f"trials #0 to #2 ran under {older}; from trial #3 on, a run stops when a sampled trial's validation accuracy "
        "meets the target; its test accuracy is reported beside it, never used to stop; from trial #5 on, a run "
        "stops when a sampled trial's test accuracy meets the target, which biases the test accuracy reported at the "
        "stop upward (the study file accepts it: why)")
    assert describe_stop_rules(stop_rules_with(None, load_spec(write_study()), 0)) == \
        "no target, a run stops at its budget"
