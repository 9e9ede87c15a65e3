"""What a study holds, read back: the summary `best` prints, and a two-objective study seen as single-objective."""

from __future__ import annotations

import optuna

from hpsearch.results import ranking
from hpsearch.results.trials import single_objective_view, summarize
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
    study.set_user_attr(ranking.confirm_key(1), confirm.summarize([{"seed": 1, "val_accuracy": 0.85, "test_accuracy": 0.85}]))
    study.set_user_attr(ranking.confirm_key(0), confirm.summarize([{"seed": 1, "val_accuracy": 0.7, "test_accuracy": 0.7}]))
    view = single_objective_view(study)
    assert ranking.best_trial(ranking.study_trials(view)).number == 1  # the single-run best is #0
