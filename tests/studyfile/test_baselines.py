"""Baselines: exact parameter counts, fixed trials interleaved with the search and queued once, refused when they
do not fit, reported."""

from __future__ import annotations

import dataclasses
import datetime

import optuna
import pytest
import torch
from click.testing import CliRunner
from optuna.trial import FrozenTrial, TrialState

from hpsearch.cli import main
from hpsearch.errors import SpecError
from hpsearch.search.run import RunOptions, baseline_due, run
from hpsearch.studyfile.baselines import BASELINES
from hpsearch.studyfile.schema import load_spec
from hpsearch.studyfile.types import DatasetSpec
from hpsearch.training import devicedata as data
from hpsearch.training import recipe
from hpsearch.training.space import built_param_count, fit_problem

STATED = [b for b in BASELINES.values() if b.param_count is not None]


def test_the_six_stated_counts_are_all_covered():
    assert {b.name: b.param_count for b in STATED}.items() >= {
        "seed001-cnn": 890_410, "seed002-fc": 12_523_266, "seed002-cnn": 81_834, "seed003-tutorial": 62_006,
        "seed004-fc": 29_778_020, "seed000-catsdogs": 26_308_673}.items()


@pytest.mark.parametrize("baseline", STATED, ids=lambda b: b.name)
def test_built_model_matches_the_stated_parameter_count(baseline):
    assert built_param_count(baseline) == baseline.param_count


def test_q9_matches_its_approximate_count_within_ten_percent():
    assert abs(built_param_count(BASELINES["seed002-cnn-q9"]) / 654_454 - 1) < 0.10


@pytest.mark.parametrize("baseline", BASELINES.values(), ids=lambda b: b.name)
def test_every_baseline_fits_its_own_report_input(baseline):
    assert fit_problem(baseline, baseline.input_shape, baseline.num_classes) is None
    assert baseline.config()["schedule"] in ("constant", "cosine")  # hpsearch's defaults never leak in silently


def run_study(write_study, storage, n_trials, baselines=("seed002-cnn-q9", "seed002-fc"), **overrides):
    spec = load_spec(write_study(baselines=list(baselines), budget={"epochs": 2, "trials": n_trials},
                                 pruner={"name": "median", "n_startup_trials": 0, "min_epochs": 0}, **overrides))
    return run(spec, storage, RunOptions(device="cpu"))


def test_baselines_interleave_with_the_search_all_within_the_budget_and_once_across_runs(write_study, storage):
    run_study(write_study, storage, 3)
    study = run_study(write_study, storage, 2)
    tags = [t.user_attrs.get("baseline") for t in study.trials]
    # The search goes first; a baseline follows once the search has had more of the run's time; the last
    # trial of a 3-trial budget is the baseline still missing, so both ran within it; a second run adds none.
    assert tags == [None, "seed002-cnn-q9", "seed002-fc", None, None]
    q9 = study.trials[1]
    assert q9.state == TrialState.COMPLETE and q9.params == {}  # fixed: nothing sampled
    assert q9.user_attrs["config"] == BASELINES["seed002-cnn-q9"].config()
    assert q9.user_attrs["param_count"] == 128_490  # the q9 net rebuilt for 8x8 one-channel digits
    assert q9.user_attrs["epochs"] == 2  # a baseline is never pruned: it runs the study's budget


def past_trial(number, seconds, *, baseline=None, run="r", state=TrialState.COMPLETE):
    """A stored trial that started `number` minutes past noon and ran `seconds` (None: still running)."""
    start = datetime.datetime(2026, 12, 3, 12, number)
    end = None if seconds is None else start + datetime.timedelta(seconds=seconds)
    return FrozenTrial(number=number, state=state if seconds is not None else TrialState.RUNNING,
                       value=0.9 if state == TrialState.COMPLETE and seconds is not None else None, values=None,
                       datetime_start=start, datetime_complete=end, params={}, distributions={},
                       user_attrs={"run": run, **({"baseline": baseline} if baseline else {})}, system_attrs={},
                       intermediate_values={}, trial_id=number)


NOON = datetime.datetime(2026, 12, 3, 12, 30)


@pytest.mark.parametrize("trials, slots_left, due", [
    ([], 10, None),  # the search starts
    ([past_trial(0, 5)], 10, "b1"),  # the search had 5 s, the baselines none
    ([past_trial(0, 5), past_trial(1, 60, baseline="b1")], 10, None),  # b1 took more than the search
    ([past_trial(0, 5), past_trial(1, 60, baseline="b1"), past_trial(2, 61)], 10, "b2"),
    ([past_trial(0, 5), past_trial(1, 60, baseline="b1")], 1, "b2"),  # one trial left: the missing baseline
    ([past_trial(0, 5), past_trial(1, 60, baseline="b1")], 2, None),  # two left: the search may take one
    ([past_trial(0, 500, run="earlier"), past_trial(1, 5)], 10, "b1"),  # only this run's time counts
    ([past_trial(0, 5), past_trial(1, 5, baseline="b1"), past_trial(2, 1, baseline="b2")], 1, None),  # all ran
    ([past_trial(0, 5), past_trial(1, 2, baseline="b1", state=TrialState.FAIL)], 10, "b2"),  # b1 failed: queued once
    # (a lost trial's copy is queued by storage.fail_lost_trials, and waits: see below)
    ([past_trial(0, None)], 10, "b1"),  # a running trial counts the time it has run so far (other workers)
])
def test_a_baseline_is_due_when_the_search_had_more_of_the_run_or_the_budget_needs_it(trials, slots_left, due):
    assert baseline_due(trials, ("b1", "b2"), "r", slots_left, NOON) == due


def test_a_waiting_copy_goes_before_any_baseline():
    waiting = past_trial(1, 5, baseline="b1")
    waiting.state = TrialState.WAITING
    assert baseline_due([past_trial(0, 5), waiting], ("b1", "b2"), "r", 1, NOON) is None


@pytest.mark.parametrize("dataset, name, why", [
    ("digits", "seed001-cnn", "seed001-cnn does not fit digits: the 8x8 input shrinks to nothing"),
    ("cifar10", "seed000-catsdogs", "seed000-catsdogs does not fit cifar10: output 'sigmoid' needs exactly 2"),
    ("digits", "seed999-magic", 'unknown baseline "seed999-magic" (allowed: seed001-cnn'),
])
def test_a_baseline_that_does_not_fit_is_refused_on_load(write_study, dataset, name, why):
    with pytest.raises(SpecError) as caught:
        load_spec(write_study(dataset={"name": dataset}, baselines=[name]))
    assert any(p.startswith("baselines: " + why) for p in caught.value.problems), caught.value.problems


def test_report_shows_finished_and_pending_baselines_and_the_best_searched(write_study, storage, tmp_path):
    path = write_study(baselines=["seed002-cnn-q9", "seed002-fc"], budget={"epochs": 2, "trials": 1})
    runner = CliRunner()
    assert runner.invoke(main, ["run", "--study", str(path), "--storage", storage]).exit_code == 0
    result = runner.invoke(main, ["report", "--study", str(path), "--storage", storage, "--out", "r.md"])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "r.md").read_text().splitlines()
    q9 = next(line for line in lines if "seed002-cnn-q9" in line)
    fc = next(line for line in lines if "seed002-fc" in line)
    assert "78.20% test on cifar10" in q9 and "| 128,490 | 2 |" in q9 and "%" in q9.split("|")[5]
    assert "| pending | pending |" in fc and "0.00%" not in fc
    assert result.stdout == (tmp_path / "r.md").read_text()
    runner.invoke(main, ["run", "--study", str(path), "--storage", storage, "--n-trials", "2"])
    table = runner.invoke(main, ["report", "--study", str(path), "--storage", storage]).stdout
    assert "pending" not in table and "searched #1" in table


def test_baselines_command_lists_every_baseline():
    result = CliRunner().invoke(main, ["baselines"])
    assert result.exit_code == 0
    for b in BASELINES.values():
        assert b.name in result.stdout
    assert "890,410 (as stated)" in result.stdout and "report 001 §1.2" in result.stdout


def test_sigmoid_head_trains_two_classes_with_binary_cross_entropy():
    digits = data.load(DatasetSpec("digits"), torch.device("cpu"))
    keep = lambda y: (y == 0) | (y == 1)
    two = dataclasses.replace(digits, classes=("0", "1"), **{
        f"{split}_{part}": getattr(digits, f"{split}_{part}")[keep(getattr(digits, f"{split}_y"))]
        for split in ("train", "val", "test") for part in ("x", "y")})
    params = {"blocks": 1, "convs_per_block": 1, "width": 8, "output": "sigmoid", "batch_size": 32, "lr": 0.05}
    trained = recipe.train(params, two, epochs=3, seed=0)
    assert trained.model[-1].out_features == 1
    assert trained.val_accuracy > 0.95 and trained.test_accuracy > 0.95


def test_a_baseline_that_meets_the_target_is_noted_and_the_run_goes_on_until_the_search_does(write_study, storage):
    path = write_study(baselines=["seed002-cnn-q9"], budget={"epochs": 2, "trials": 3},
                       target={"metric": "test_accuracy", "value": 0.5},
                       space={"lr": {"float": [1e-6, 2e-6], "log": True}})  # the search cannot learn in 2 epochs
    result = CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="tiny-digits", storage=storage)
    assert [t.user_attrs.get("baseline") for t in study.trials] == [None, "seed002-cnn-q9", None]  # not stopped at #1
    q9 = study.trials[1].user_attrs["test_accuracy"]
    assert q9 >= 0.5 and all(t.user_attrs["test_accuracy"] < 0.5 for t in (study.trials[0], study.trials[2]))
    note = f"baseline seed002-cnn-q9 already meets the target: test {q9:.2%}"
    assert f"  {note}\n" in result.stderr and f"B{note[1:]}." in result.stdout
    assert "target test_accuracy >= 50.00%: not reached yet" in result.stdout
