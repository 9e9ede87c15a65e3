"""The end of a run, decided in the library: what it did, the all-failed verdict, the dashboard note."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from optuna_dashboard import get_note

from hpsearch.search.finish import finish
from hpsearch.search.run import RunOptions
from hpsearch.studyfile.catalog import load_study_spec


def stored(state: TrialState, run: str, value: float | None = None, **attrs) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=state, value=value, params={"lr": 0.1},
                                     distributions={"lr": FloatDistribution(0.01, 0.2)},
                                     user_attrs={"run": run, "test_accuracy": value, **attrs})


def test_a_run_whose_trials_all_failed_names_the_most_common_reason(write_study, storage):
    spec = load_study_spec(str(write_study()), deep=False)
    study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize")
    study.add_trial(stored(TrialState.COMPLETE, "earlier", 0.9))
    for reason in ("loss became NaN", "loss became NaN", "out of memory"):
        study.add_trial(stored(TrialState.FAIL, "this", failure=reason))
    end = finish(study, spec, RunOptions(run_id="this"))
    assert (end.trials, end.finished, end.nothing_to_do, end.reached) == (3, 1, False, None)
    assert end.all_failed == ("loss became NaN", 2)
    assert end.summary["best"]["number"] == 0 and end.pace
    assert "| #0 |" in get_note(study)  # the baselines-versus-search table, for the dashboard


def test_until_a_total_already_held_is_nothing_to_do_and_a_searched_trial_reaches_the_target(write_study, storage):
    spec = load_study_spec(str(write_study(target={"metric": "val_accuracy", "value": 0.5})), deep=False)
    study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize")
    study.add_trial(stored(TrialState.COMPLETE, "earlier", 0.9))
    end = finish(study, spec, RunOptions(until=1, run_id="this"))
    assert end.nothing_to_do and end.all_failed is None and end.reached is None
    study.add_trial(stored(TrialState.COMPLETE, "this", 0.6))
    end = finish(study, spec, RunOptions(until=2, run_id="this"))
    assert not end.nothing_to_do and end.reached.number == 1
