"""The end of a run, decided in the library: what it did, time to target, the all-failed verdict, the dashboard note."""

from __future__ import annotations

import optuna
from click.testing import CliRunner
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from optuna_dashboard import get_note

from hpsearch.cli import main
from hpsearch.results import dashboard, timing
from hpsearch.search.finish import finish
from hpsearch.search.run import RunOptions
from hpsearch.studyfile.catalog import load_study_spec


def stored(state: TrialState, run: str, value: float | None = None, **attrs) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=state, value=value, params={"lr": 0.1},
                                     distributions={"lr": FloatDistribution(0.01, 0.2)},
                                     user_attrs={"run": run, "test_accuracy": value, **attrs})


def test_a_run_whose_trials_all_failed_names_the_most_common_reason(write_study, storage):
    spec = load_study_spec(str(write_study()))
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
    spec = load_study_spec(str(write_study(target={"metric": "val_accuracy", "value": 0.5})))
    study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize")
    study.add_trial(stored(TrialState.COMPLETE, "earlier", 0.9))
    end = finish(study, spec, RunOptions(until=1, run_id="this"))
    assert end.nothing_to_do and end.all_failed is None and end.reached is None
    study.add_trial(stored(TrialState.COMPLETE, "this", 0.6))
    end = finish(study, spec, RunOptions(until=2, run_id="this"))
    assert not end.nothing_to_do and end.reached.number == 1


def test_a_run_ends_with_its_time_to_target_and_writes_the_dashboard_note(write_study, storage):
    path = str(write_study(budget={"epochs": 2, "trials": 2}, target={"metric": "val_accuracy", "value": 0.3}))
    result = CliRunner().invoke(main, ["run", "--study", path, "--storage", storage, "--device", "cpu",
                                       "--keep-weights", "0", "--no-stop-at-target"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="tiny-digits", storage=storage)
    first = study.trials[0]
    test = first.user_attrs["test_accuracy"]
    line = (f"Time to target (val_accuracy >= 30.00%): first reached by searched trial #0 (val {first.value:.2%}; "
            f"test {test:.2%}, {'also at or above' if test >= 0.3 else 'below'} the target) after "
            f"{timing.duration((first.datetime_complete - first.datetime_start).total_seconds())} wall time and "
            f"{timing.duration(first.user_attrs['seconds'])} of training (device-seconds); 1 trial until then "
            "(1 complete, 0 pruned, 0 failed).")
    assert line in result.stdout and "Pace: 2 finished trials in " in result.stdout
    note = get_note(study)
    assert note.startswith("# tiny-digits: baselines and best searched trials, 2 epochs a trial")
    assert "| #0 | searched #" in note and line in note and note.endswith(dashboard.NOTE_END)
    assert "- Stop rule: a run stops when a sampled trial's validation accuracy meets the target" in note
    dashboard.write_note(study, "# rewritten")  # what a person wrote below the line stays
    from optuna_dashboard import save_note
    save_note(study, get_note(study) + "\nmy own remark")
    dashboard.write_note(study, "# again")
    assert get_note(study) == f"# again\n\n---\n{dashboard.NOTE_END}\nmy own remark"


def test_failures_of_one_kind_are_counted_together_whatever_their_numbers(write_study, storage):
    spec = load_study_spec(str(write_study()))
    study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize")
    for lr in (0.12, 0.153, 0.19, 0.2):
        study.add_trial(stored(TrialState.FAIL, "this", failure=f"training loss became nan in epoch 1 (lr {lr:g})"))
    for batch in (512, 256, 256):
        study.add_trial(stored(TrialState.FAIL, "this", failure=f"CUDA out of memory (batch_size {batch}); memory "
                                                                "freed, the study goes on"))
    end = finish(study, spec, RunOptions(run_id="this"))
    assert end.all_failed == ("training loss became nan in epoch 1 (lr …)", 4)
    assert study.trials[0].user_attrs["failure"] == "training loss became nan in epoch 1 (lr 0.12)"  # kept as it was


def test_a_run_whose_every_trial_diverged_says_so_for_all_of_them(write_study, storage):
    path = write_study(budget={"epochs": 1, "trials": 3}, space={"lr": {"float": [50, 100], "log": True}},
                       fixed={"blocks": 1, "convs_per_block": 1, "width": 4, "batch_size": 64, "batchnorm": False})
    result = CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu",
                                       "--keep-weights", "0"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    reasons = {t.user_attrs["failure"] for t in optuna.load_study(study_name="tiny-digits", storage=storage).trials}
    assert len(reasons) == 3  # each names its own lr
    assert ("error: every trial of this run failed (3 trials); the most common reason (3 of 3): training loss became "
            "nan in epoch 1 (lr …)") in result.stderr
