"""Study files are validated on load (and their parts built before a run): every problem named with its file and
key, nothing run."""

from __future__ import annotations

import sys

import pytest

from hpsearch.errors import SpecError
from hpsearch.search import preflight
from hpsearch.studyfile.catalog import shipped_study_files
from hpsearch.studyfile.schema import load_spec
from hpsearch.studyfile.types import Target


def problems_of(path) -> list[str]:
    """The problems `run` reports of a study file: those of reading it, else those of building its parts."""
    with pytest.raises(SpecError) as caught:
        preflight.check(load_spec(path))
    assert all(line.startswith(str(path)) for line in str(caught.value).splitlines())
    return caught.value.problems


@pytest.mark.parametrize("path", shipped_study_files(), ids=lambda p: p.stem)
def test_shipped_studies_are_valid_and_stop_on_validation(path):
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.budget.epochs >= 1
    assert spec.target is None or spec.target.metric == "val_accuracy"


def test_a_test_target_is_refused_in_one_line_saying_why_unless_the_file_accepts_the_bias(write_study):
    assert problems_of(write_study(target={"metric": "test_accuracy", "value": 0.9})) == [
        "target.metric: test_accuracy lets the test set decide when the search stops, so the test accuracy reported "
        "at the stop is biased upward: use val_accuracy (test accuracy is still reported beside it), or give "
        'target.test_set_stops_the_search: "why" to accept the bias']
    why = "report 003 stopped on test: compared alike"
    target = {"metric": "test_accuracy", "value": 0.9, "test_set_stops_the_search": why}
    accepted = load_spec(write_study(target=target))
    assert accepted.target == Target("test_accuracy", 0.9, why=why)
    assert load_spec(write_study(target={"value": 0.9})).target == Target("val_accuracy", 0.9)  # the default metric


def test_tiny_study_parses_into_typed_spec(write_study):
    spec = load_spec(write_study())
    assert spec.dataset.name == "digits"
    assert spec.space["lr"].kind == "float" and spec.space["lr"].log
    assert spec.fixed["blocks"] == 1


@pytest.mark.parametrize("overrides, key, allowed", [
    ({"colour": "red"}, "colour", "allowed: about, baselines, budget"),
    ({"dataset": {"name": "mnist3d"}}, "dataset.name", "allowed: digits, fashion-mnist, cifar10, cifar100"),
    ({"dataset": {"name": "digits", "valdation": 0.1}}, "dataset.valdation", "unknown key"),
    ({"dataset": {"name": ["digits"]}}, "dataset.name", "unknown dataset [\"digits\"] (allowed: digits"),
    ({"dataset": {"validation": 0.1}}, "dataset.name", "unknown dataset null (allowed: digits"),
    ({"seed": -1}, "seed", "must be an integer from 0 to 4294967295, got -1"),
    ({"seed": 2**32}, "seed", "must be an integer from 0 to 4294967295, got 4294967296"),
    ({"dataset": {"name": "digits", "split_seed": -1}}, "dataset.split_seed", "from 0 to 4294967295, got -1"),
    ({"fixed": {"blocks": 1, "widths": []}}, "fixed", "widths has 0 entries but blocks is 1: give one per block"),
    ({"budget": {"epochs": "ten"}}, "budget.epochs", "whole number >= 1"),
    ({"budget": {"epochs": 0}}, "budget.epochs", "whole number >= 1"),
    ({"target": {"metric": "loss", "value": 0.9}}, "target.metric", "allowed: val_accuracy, test_accuracy"),
    ({"target": {"value": 93}}, "target.value", "accuracy in (0, 1]"),
    ({"target": {"metric": "val_accuracy", "value": 0.9, "test_set_stops_the_search": "why"}},
     "target.test_set_stops_the_search", 'only for metric test_accuracy (the target\'s metric is "val_accuracy")'),
    ({"target": {"metric": "test_accuracy", "value": 0.9, "test_set_stops_the_search": " "}},
     "target.test_set_stops_the_search", 'must say why the test set may stop the search, got " "'),
    ({"fixed": {"epochs": 4}}, "fixed.epochs", "4 is over the budget: a trial trains at most budget.epochs (3)"),
    ({"fixed": {"epochs": 0}}, "fixed.epochs", "0 must be in [1, inf]"),
    ({"space": {"epochs": {"int": [1, 5]}}}, "space.epochs.int", "5 is over the budget"),
    ({"space": {"epochs": {"choice": [2, 9]}}}, "space.epochs.choice", "9 is over the budget"),
    ({"sampler": {"name": "genetic"}}, "sampler.name", "allowed: tpe, random, cmaes, gp, qmc, nsga2"),
    ({"sampler": {"name": "tpe", "n_startup": 3}}, "sampler.n_startup", "n_startup_trials"),
    ({"pruner": {"name": "early"}}, "pruner.name", "allowed: none, median, percentile, successive_halving, hyperband"),
    ({"pruner": {"name": "median", "min_epochs": "two"}}, "pruner", "median rejects these options"),
    ({"sampler": {"name": "tpe", "n_ei_candidates": 0}}, "sampler",
     "tpe rejects these options: n_ei_candidates must be a whole number >= 1, got 0"),
    ({"pruner": {"name": "hyperband", "reduction_factor": 1}}, "pruner",
     "hyperband rejects these options: reduction_factor must be a whole number >= 2, got 1"),
    ({"space": {"depth": {"int": [1, 3]}}}, "space.depth", "allowed: family, blocks"),
    ({"space": {"lr": {"float": [0.1, 0.01]}}}, "space.lr.float", "inverted range"),
    ({"space": {"lr": {"float": [0.1, 0.1]}}}, "space.lr.float", "empty range"),
    ({"space": {"lr": {"float": [-1.0, 0.1]}}}, "space.lr.float", "out of range"),
    ({"space": {"lr": {"float": [0.0001, 0.1], "log": "yes"}}}, "space.lr.log", "true or false"),
    ({"space": {"blocks": {"float": [1.0, 3.0]}}}, "space.blocks", "blocks is an integer"),
    ({"space": {"blocks": {"int": [1.5, 3]}}}, "space.blocks.int", "must be an integer"),
    ({"space": {"optimizer": {"choice": ["sgd", "lion"]}}}, "space.optimizer.choice", "sgd_nesterov, sgd, adam, adamw"),
    ({"space": {"augment": {"choice": ["mixup"]}}}, "space.augment.choice", "flip_crop_cutout"),
    ({"space": {"conv_dropout": {"float": [0.0, 1.0]}}}, "space.conv_dropout.float", "[0, 1)"),
    ({"space": {"lr": 0.1}}, "space.lr", "use fixed: for one value"),
    ({"fixed": {"batch_size": "big"}}, "fixed.batch_size", "must be an integer"),
    ({"fixed": {"head_widths": [512, "x"]}}, "fixed.head_widths", "list of integers"),
    ({"fixed": {"lr": 0.1}}, "fixed.lr", "is also in space"),
    ({"space": {"lr": {"float": [0.01, 0.1]}, "lr_per_1024": {"float": [0.1, 1.0]}}}, "space.lr_per_1024",
     "replaces lr (lr = lr_per_1024 x batch_size / 1024): give lr or lr_per_1024, not both"),
    ({"fixed": {"lr_per_1024": 0.5}}, "fixed.lr_per_1024", "give lr or lr_per_1024, not both"),
])
def test_each_problem_is_one_line_naming_key_and_what_is_allowed(write_study, overrides, key, allowed):
    problems = problems_of(write_study(**overrides))
    matching = [p for p in problems if p.startswith(f"{key}:")]
    assert matching, problems
    assert allowed in matching[0]


def test_a_sampler_whose_package_is_missing_is_refused_naming_it(write_study, monkeypatch):
    monkeypatch.setitem(sys.modules, "cmaes", None)  # as where it is not installed: its import fails
    (problem,) = problems_of(write_study(sampler={"name": "cmaes"}))
    assert problem == ("sampler.name: cmaes needs the Python package cmaes, which is not installed: "
                       "`pip install cmaes`, or choose another sampler")


def test_every_problem_is_reported_at_once(write_study):
    path = write_study(budget={"epochs": -1}, sampler={"name": "nope"}, fixed={"lr": -3})
    keys = {p.split(":")[0] for p in problems_of(path)}
    assert {"budget.epochs", "sampler.name", "fixed.lr"} <= keys


def test_missing_required_keys(write_study):
    path = write_study(dataset=None, budget=None)
    keys = {p.split(":")[0] for p in problems_of(path)}
    assert keys == {"dataset", "budget"}


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("dataset: {name: digits\nbudget: [\n")
    (problem,) = problems_of(path)
    assert "line" in problem and "not valid YAML" in problem


def test_a_key_given_twice_is_refused_not_silently_dropped(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("dataset: digits\nbudget: {epochs: 1}\nfixed: {blocks: 1}\nfixed: {lr: 0.1}\n")
    assert problems_of(path) == ["line 4, column 1: not valid YAML (the key 'fixed' is given twice)"]


def test_unreadable_file(tmp_path):
    (problem,) = problems_of(tmp_path / "absent.yaml")
    assert "cannot read the file" in problem


@pytest.mark.parametrize("overrides, key, allowed", [
    ({"limits": {"params": 0}}, "limits.params", "whole number of parameters >= 1"),
    ({"limits": {"params": 1.5e6}}, "limits.params", "such as 1000000"),
    ({"limits": {"train_seconds": -1}}, "limits.train_seconds", "seconds > 0"),
    ({"limits": {"train_secs": 60}}, "limits.train_secs", "allowed: params, train_seconds"),
    ({"limits": {}}, "limits", "give params (a parameter count), train_seconds, or both"),
    ({"limits": 1000}, "limits", "must be a mapping"),
    ({"objectives": ["params", "val_accuracy"]}, "objectives", "val_accuracy first"),
    ({"objectives": ["val_accuracy", "loss"]}, "objectives", "[val_accuracy, params] or [val_accuracy, train_seconds]"),
    ({"objectives": "params"}, "objectives", "[val_accuracy, params]"),
    ({"objectives": ["val_accuracy", ["params"]]}, "objectives", "got [\"val_accuracy\", [\"params\"]]"),
    ({"objectives": ["val_accuracy", "params"], "sampler": {"name": "cmaes"}}, "sampler.name", "optimises one objective"),
])
def test_bad_limits_and_objectives_are_one_line_each(write_study, overrides, key, allowed):
    problems = problems_of(write_study(**overrides))
    assert len(problems) == 1 and problems[0].startswith(f"{key}: ") and allowed in problems[0], problems


def test_limits_and_objectives_parse(write_study):
    spec = load_spec(write_study(limits={"params": 1000000, "train_seconds": 120},
                                 objectives=["val_accuracy", "train_seconds"]))
    assert (spec.limits.params, spec.limits.train_seconds) == (1000000, 120)
    assert spec.objectives == ("val_accuracy", "train_seconds")
    assert load_spec(write_study()).objectives == ("val_accuracy",)


def test_a_run_s_header_says_what_a_sampled_trial_and_a_baseline_train(write_study):
    assert load_spec(write_study()).describe_epochs() == "3 epochs a trial"
    assert load_spec(write_study(fixed={"blocks": 1, "epochs": 2})).describe_epochs() == "2 epochs a trial"
    searched = write_study(space={"epochs": {"int": [1, 2]}}, baselines=["seed002-cnn-q9"])
    assert load_spec(searched).describe_epochs() == "up to 2 epochs a trial (baselines 3)"


BY_OPTIMIZER = {"optimizer": {"choice": ["sgd_nesterov", "adam"]},
                "lr": {"by": "optimizer", "sgd_nesterov": {"float": [0.01, 0.5], "log": True},
                       "adam": {"float": [1.0e-4, 3.0e-3], "log": True}}}
UNFIXED = {"blocks": 1, "convs_per_block": 1, "batch_size": 64}  # the tiny study's fixed, the optimizer searched


def test_a_range_decided_by_an_earlier_choice_parses(write_study):
    lr = load_spec(write_study(space=BY_OPTIMIZER, fixed=UNFIXED)).space["lr"]
    assert lr.by == "optimizer" and [value for value, _ in lr.branches] == ["sgd_nesterov", "adam"]
    assert lr.branch("lr", "adam") == ("lr[optimizer=adam]", dict(lr.branches)["adam"])
    assert dict(lr.branches)["adam"].high == 3.0e-3 and dict(lr.branches)["adam"].log


@pytest.mark.parametrize("lr, key, says", [
    ({"by": "batchnorm", "true": {"float": [0.01, 0.1]}}, "space.lr.by",
     "\"batchnorm\" cannot decide lr's range (allowed: a parameter decided before it that every trial has: family, "
     "output, pretrained, epochs, optimizer, lr_per_1024)"),
    ({"by": "schedule", "cosine": {"float": [0.01, 0.1]}}, "space.lr.by",
     "\"schedule\" cannot decide lr's range"),  # decided after lr
    ({"by": "family", "cnn": {"float": [0.01, 0.1]}}, "space.lr.by",
     "family must be searched as {choice: [...]} in space to decide lr's range"),
    ({"by": "optimizer", "sgd_nesterov": {"float": [0.01, 0.5]}}, "space.lr", "has no range for optimizer adam"),
    ({"by": "optimizer", "sgd_nesterov": {"float": [0.01, 0.5]}, "adam": {"float": [1e-4, 3e-3]},
      "lion": {"float": [1e-4, 3e-3]}}, "space.lr.lion", "is not one of optimizer's choices (sgd_nesterov, adam)"),
    ({"by": "optimizer", "sgd_nesterov": {"float": [0.5, 0.01]}, "adam": {"float": [1e-4, 3e-3]}},
     "space.lr.sgd_nesterov.float", "inverted range"),
    ({"by": "optimizer", "sgd_nesterov": {"by": "optimizer"}, "adam": {"float": [1e-4, 3e-3]}},
     "space.lr.sgd_nesterov", "a branch is one distribution"),
])
def test_a_conditional_range_that_cannot_be_is_one_line(write_study, lr, key, says):
    problems = problems_of(write_study(space={**BY_OPTIMIZER, "lr": lr}, fixed=UNFIXED))
    assert any(p.startswith(f"{key}: ") and says in p for p in problems), problems


@pytest.mark.parametrize("warm_start, key, says", [
    ("other", "warm_start", "must be {study: NAME} or {study: NAME, storage: URL}"),
    ({"study": ""}, "warm_start.study", "must be a study name"),
    ({"study": "other", "url": "x"}, "warm_start.url", "unknown key (allowed: storage, study)"),
    ({"study": "other", "storage": 5}, "warm_start.storage", "must be a storage URL"),
    ({"study": "tiny-digits"}, "warm_start.study", "names this study itself"),
])
def test_a_warm_start_that_cannot_be_is_one_line(write_study, warm_start, key, says):
    problems = problems_of(write_study(warm_start=warm_start))
    assert len(problems) == 1 and problems[0].startswith(f"{key}: ") and says in problems[0], problems


def test_a_warm_start_parses_and_never_echoes_its_storage(write_study):
    spec = load_spec(write_study(warm_start={"study": "other", "storage": "postgresql://u:secret@db/x"}))
    assert (spec.warm_start.study, spec.warm_start.storage) == ("other", "postgresql://u:secret@db/x")
    problems = problems_of(write_study(warm_start={"study": "", "storage": "postgresql://u:secret@db/x"}))
    assert "secret" not in " ".join(problems)
