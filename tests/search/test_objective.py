"""One trial on digits with real training: sampled, fitted, reported, pruned (by the pruner or over a limit),
and its expected failures recorded while the study goes on."""

from __future__ import annotations

import html
import json

import optuna
import pytest
import torch
from click.testing import CliRunner
from optuna.trial import TrialState

from hpsearch.cli import main
from hpsearch.results import ranking, timing
from hpsearch.results.trials import first_reaching
from hpsearch.search.objective import chance_accuracy, hopeless, make_objective
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.limits import within_limits
from hpsearch.studyfile.schema import load_spec
from hpsearch.training import recipe
from hpsearch.training.devicedata import load
from hpsearch.training.train import EpochStats


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


@pytest.mark.parametrize("pruner", [{"name": "median", "n_startup_trials": 1, "min_epochs": 1},
                                    {"name": "hyperband", "min_epochs": 1, "reduction_factor": 2}])
def test_a_searched_epochs_trains_each_trial_its_own_length_under_the_pruners(write_study, storage, pruner):
    """Each sampled trial reports epochs 1 to its own and completes there, or is pruned before; a baseline trains
    the budget's; time to target counts the short trials as they ran."""
    spec = load_spec(write_study(
        budget={"epochs": 4, "trials": 6}, pruner=pruner, baselines=["seed002-cnn-q9"],
        target={"metric": "val_accuracy", "value": 0.5},
        space={"lr": {"float": [0.02, 0.2], "log": True}, "epochs": {"int": [1, 3]}},
        fixed={"blocks": 1, "convs_per_block": 1, "width": 8, "batch_size": 128}))
    study = run(spec, storage, RunOptions(device="cpu", stop_at_target=False))
    baselines = [t for t in study.trials if "baseline" in t.user_attrs]
    assert len(baselines) == 1 and baselines[0].user_attrs["epochs"] == 4 and list(baselines[0].intermediate_values) \
        == [1, 2, 3, 4] and "epochs" not in baselines[0].user_attrs["config"]
    sampled = [t for t in study.trials if "baseline" not in t.user_attrs]
    completed = [t for t in sampled if t.state == TrialState.COMPLETE]
    assert completed and {t.state for t in sampled} <= {TrialState.COMPLETE, TrialState.PRUNED}
    for trial in completed:
        own = trial.params["epochs"]
        assert list(trial.intermediate_values) == list(range(1, own + 1))
        assert trial.user_attrs["epochs"] == trial.user_attrs["config"]["epochs"] == own
    for trial in sampled:
        if trial.state == TrialState.PRUNED:
            assert max(trial.intermediate_values) == trial.user_attrs["epochs"] < trial.params["epochs"]
    reached = first_reaching(study.trials, spec)
    assert reached is not None and timing.pace(study.trials, spec).reached_by == reached.number


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


PARAMS_LIMIT = 2000  # 171 * width + 10 parameters: widths up to 11 fit


def test_an_over_limit_model_is_never_trained_and_never_the_best(write_study, storage, tmp_path):
    path = write_study(limits={"params": PARAMS_LIMIT}, budget={"epochs": 2, "trials": 6})
    result = CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="tiny-digits", storage=storage)
    over = [t for t in study.trials if t.user_attrs["param_count"] > PARAMS_LIMIT]
    within = [t for t in study.trials if t.user_attrs["param_count"] <= PARAMS_LIMIT]
    assert over and within, [t.user_attrs["param_count"] for t in study.trials]
    for trial in over:
        assert trial.state == TrialState.PRUNED and trial.user_attrs["epochs"] == 0
        assert not trial.intermediate_values and "test_accuracy" not in trial.user_attrs
        assert trial.user_attrs["over_limit"] == (f"params {trial.user_attrs['param_count']:,} over the limit "
                                                f"{PARAMS_LIMIT:,}: not trained")
        assert trial.constraints["params"] == trial.user_attrs["param_count"] - PARAMS_LIMIT > 0
        assert f"trial #{trial.number} over a limit: params" in result.stderr
    assert all(t.state == TrialState.COMPLETE and within_limits(t) for t in within)
    best = json.loads(CliRunner().invoke(main, ["best", "--study", str(path), "--storage", storage,
                                                "--format", "json"]).stdout)
    assert best["limits"] == {"params": PARAMS_LIMIT} and best["over_limit"] == len(over)
    assert best["best"]["number"] == ranking.best_trial(within).number
    assert best["best"]["param_count"] <= PARAMS_LIMIT
    assert f"limits params <= 2,000: {len(over)} trial" in result.stdout
    report = CliRunner().invoke(main, ["report", "--study", str(path), "--storage", storage, "--out", "rep"])
    said = f"Limits: params <= 2,000. {len(over)} trial"
    assert said in report.stdout and html.escape(said) in (tmp_path / "rep" / "index.html").read_text()


def test_a_train_seconds_limit_stops_a_trial_after_the_epoch_that_passes_it(write_study, storage):
    tight = run(load_spec(write_study(limits={"train_seconds": 0.001})), storage, RunOptions(device="cpu", n_trials=2))
    for trial in tight.trials:  # every epoch takes over a millisecond
        assert trial.state == TrialState.PRUNED and trial.user_attrs["epochs"] == 1
        assert trial.user_attrs["over_limit"].startswith("train_seconds ")
        assert trial.user_attrs["over_limit"].endswith("over the limit 0.001 after epoch 1")
        assert trial.constraints["train_seconds"] == trial.user_attrs["train_seconds"] - 0.001 > 0
    loose = run(load_spec(write_study(name="loose", limits={"train_seconds": 1000})), storage,
                RunOptions(device="cpu", n_trials=1))
    (trial,) = loose.trials
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["epochs"] == 3
    assert trial.constraints == {"train_seconds": trial.user_attrs["train_seconds"] - 1000}


def test_the_objective_trains_a_fixed_trial_without_a_study_and_records_its_provenance(write_study):
    """Optuna's FixedTrial: one trial with given parameters, no study, no storage."""
    spec = load_spec(write_study(budget={"epochs": 2, "trials": 1}))
    digits = load(spec.dataset, torch.device("cpu"))
    trial = optuna.trial.FixedTrial({"lr": 0.1, "width": 8})
    value = make_objective(spec, digits)(trial)
    attrs = trial.user_attrs
    assert value == attrs["val_accuracy"] and 0.5 < attrs["test_accuracy"] <= 1
    assert attrs["config"]["lr"] == 0.1 and attrs["config"]["width"] == 8 and attrs["epochs"] == 2
    assert attrs["input_shape"] == [1, 8, 8] and attrs["classes"] == 10 and attrs["dataset_source"] == digits.source
    assert attrs["param_count"] == attrs["trainable_count"] > 0 and attrs["train_seconds"] <= attrs["seconds"]


def epoch(number, loss, val):
    return EpochStats(number, loss, val, 1.0)


@pytest.mark.parametrize("history, says", [
    ([epoch(1, 2.40, 0.10)], "at chance after epoch 1: val 0.1000 (chance 0.1130), training loss 2.400 "
                             "(a uniform guess's 2.303)"),
    ([epoch(1, 2.20, 0.10)], None),  # its loss moved below a guess's: learning, slowly
    ([epoch(1, 2.40, 0.30)], None),  # above chance
    ([epoch(1, 1.00, 0.50), epoch(2, 2.50, 0.40)], "training loss rising sharply in epoch 2: 1.000 -> 2.500"),
    ([epoch(1, 1.00, 0.50), epoch(2, 1.90, 0.40)], None),  # less than twice the last
    ([epoch(1, 0.50, 0.50), epoch(2, 1.50, 0.40)], None),  # tripled, yet better than a uniform guess
])
def test_a_hopeless_trial_is_at_chance_or_its_loss_rises_sharply(history, says):
    assert hopeless(history, 0.113, 10, steps_per_epoch=87) == says


def test_hopeless_waits_for_enough_steps_to_judge():
    assert hopeless([epoch(1, 2.4, 0.1)], 0.113, 10, steps_per_epoch=9) is None
    six = [epoch(n, 2.4, 0.1) for n in range(1, 7)]  # 54 steps
    assert hopeless(six, 0.113, 10, steps_per_epoch=9).startswith("at chance after epoch 6:")
    assert hopeless([epoch(1, 1.0, 0.5), epoch(2, 2.5, 0.4)], 0.113, 10, steps_per_epoch=30) is None


def test_chance_is_the_most_common_class_s_share_and_three_standard_errors():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    assert chance_accuracy(labels, 3) == pytest.approx(0.6 + 3 * (0.6 * 0.4 / 100) ** 0.5)


def test_a_trial_at_chance_ends_after_its_first_epoch_whatever_the_pruner_s_minimum(write_study, storage):
    spec = load_spec(write_study(
        budget={"epochs": 3, "trials": 2}, pruner={"name": "median", "min_epochs": 3, "n_startup_trials": 0},
        space={"lr": {"float": [1e-7, 2e-7], "log": True}},  # 76 steps an epoch move nothing
        fixed={"blocks": 1, "convs_per_block": 1, "width": 8, "batchnorm": False, "optimizer": "sgd",
               "momentum": 0.0, "batch_size": 16}))
    result = CliRunner().invoke(main, ["run", "--study", str(spec.path), "--storage", storage, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for trial in optuna.load_study(study_name="tiny-digits", storage=storage).trials:
        assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]
        assert trial.user_attrs["stopped"].startswith("at chance after epoch 1: val ")
        assert f"trial #{trial.number} stopped: at chance after epoch 1" in result.stderr
