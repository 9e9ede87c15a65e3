"""Whole studies on digits with real training: pruning, failures recorded, resume, target stop."""

from __future__ import annotations

import optuna
import torch
from click.testing import CliRunner
from optuna.trial import TrialState

from hpsearch.cli import main
from hpsearch.results.trials import summarize
from hpsearch.search.run import RunOptions, SamplerSeed, run
from hpsearch.studyfile.params import MAX_SEED
from hpsearch.studyfile.schema import load_spec
from hpsearch.training import recipe


def states(study):
    return [t.state for t in study.trials]


def test_a_pruner_really_prunes(write_study, storage):
    spec = load_spec(write_study(
        budget={"epochs": 4, "trials": 10},
        pruner={"name": "median", "n_startup_trials": 2, "min_epochs": 1},
        space={"lr": {"float": [1.0e-5, 0.2], "log": True}},
        fixed={"blocks": 1, "convs_per_block": 1, "width": 8, "batchnorm": False, "batch_size": 128},
    ))
    study = run(spec, storage, RunOptions(device="cpu"))
    assert len(study.trials) == 10
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, states(study)
    for trial in pruned:
        assert trial.user_attrs["epochs"] < 4 and "test_accuracy" not in trial.user_attrs
        assert max(trial.intermediate_values) == trial.user_attrs["epochs"]


def test_completed_trials_record_what_a_reader_needs(write_study, storage):
    study = run(load_spec(write_study()), storage, RunOptions(device="cpu", n_trials=1))
    (trial,) = study.trials
    attrs = trial.user_attrs
    assert trial.state == TrialState.COMPLETE
    assert attrs["val_accuracy"] == trial.value and 0.5 < attrs["test_accuracy"] <= 1
    assert attrs["epochs"] == 3 and attrs["seconds"] > 0 and attrs["param_count"] > 0
    assert attrs["torch"] == torch.__version__ and attrs["optuna"] == optuna.__version__
    assert attrs["device"].startswith("cpu") and attrs["config"]["lr"] == trial.params["lr"]
    assert list(trial.intermediate_values) == [1, 2, 3]


def test_nan_loss_is_recorded_and_the_study_goes_on(write_study, storage):
    spec = load_spec(write_study(
        budget={"epochs": 2, "trials": 6},
        space={"lr": {"choice": [0.05, 100.0]}},
        fixed={"blocks": 1, "convs_per_block": 1, "width": 8, "batchnorm": False, "optimizer": "sgd",
               "momentum": 0.0},
    ))
    study = run(spec, storage, RunOptions(device="cpu"))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(study.trials) == 6 and failed and TrialState.COMPLETE in states(study)
    for trial in failed:
        assert trial.params["lr"] == 100.0
        assert "training loss became" in trial.user_attrs["failure"]


def test_cuda_out_of_memory_fails_the_trial_only(write_study, storage, monkeypatch):
    """CPU stand-in for a GPU running out of memory: the error torch raises, injected into fit."""
    real_fit = recipe.fit
    calls = []

    def fit_that_runs_out_of_memory_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(recipe, "fit", fit_that_runs_out_of_memory_once)
    study = run(load_spec(write_study()), storage, RunOptions(device="cpu", n_trials=2))
    assert states(study) == [TrialState.FAIL, TrialState.COMPLETE]
    assert "CUDA out of memory" in study.trials[0].user_attrs["failure"]


def test_architecture_that_does_not_fit_is_a_recorded_failure(write_study, storage):
    spec = load_spec(write_study(space={"blocks": {"int": [1, 6]}}, fixed={"padding": "valid"},
                                 budget={"epochs": 1, "trials": 6}))
    study = run(spec, storage, RunOptions(device="cpu"))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all("shrinks to nothing" in t.user_attrs["failure"] for t in failed)
    assert all(t.params["blocks"] >= 2 for t in failed)


def test_a_second_run_continues_the_same_study(write_study, storage):
    spec = load_spec(write_study())
    run(spec, storage, RunOptions(device="cpu", n_trials=2))
    study = run(spec, storage, RunOptions(device="cpu", n_trials=2))
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    lrs = [t.params["lr"] for t in study.trials]
    assert len(set(lrs)) == 4  # the resumed sampler does not replay the first run's draws


def test_the_run_stops_once_a_trial_reaches_the_target(write_study, storage):
    spec = load_spec(write_study(target={"metric": "val_accuracy", "value": 0.5}, budget={"epochs": 3, "trials": 5}))
    assert len(run(spec, storage, RunOptions(device="cpu")).trials) == 1
    again = run(spec, storage, RunOptions(device="cpu", stop_at_target=False, n_trials=2))
    assert len(again.trials) == 3


def test_summary_counts_states_and_picks_the_best_by_validation(write_study, storage):
    study = run(load_spec(write_study()), storage, RunOptions(device="cpu"))
    summary = summarize(study)
    assert summary["trials"] == summary["complete"] == 3
    assert summary["best"]["val_accuracy"] == max(t.value for t in study.trials)


def test_a_sampler_seed_at_the_top_of_its_range_wraps_when_a_worker_reseeds(write_study):
    seeded = optuna.create_study()
    SamplerSeed(load_spec(write_study()), MAX_SEED).follow(seeded, 3)  # as after another worker added 3 trials
    expected = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))  # MAX_SEED + 3, past 32 bits
    assert seeded.ask().suggest_float("x", 0, 1) == expected.ask().suggest_float("x", 0, 1)


def test_a_study_refuses_another_split_or_seed_than_its_trials_ran_on(write_study, storage):
    """export rebuilds every trial with the split and seed the study recorded: a trial run on others would not
    train to its numbers again."""
    run(load_spec(write_study()), storage, RunOptions(device="cpu", n_trials=1))
    for overrides, says in (({"seed": 1}, "dataset.validation 0.15, dataset.test 0.2, dataset.split_seed 0, seed 1"),
                            ({"dataset": {"name": "digits", "validation": 0.3, "test": 0.2}},
                             "dataset.validation 0.3, dataset.test 0.2, dataset.split_seed 0, seed 0")):
        result = CliRunner().invoke(main, ["run", "--study", str(write_study(**overrides)), "--storage", storage])
        assert result.exit_code == 2 and result.stderr.strip() == (
            "error: study 'tiny-digits' in the storage was made with dataset.validation 0.15, dataset.test 0.2, "
            f"dataset.split_seed 0, seed 0, the file says {says}: its trials were trained and measured on those; "
            "rename the study (name: in the file) or use another --storage")
    assert len(optuna.load_study(study_name="tiny-digits", storage=storage).trials) == 1
