"""The search space: samples stay inside the declared bounds; inactive parameters are not sampled."""

from __future__ import annotations

from dataclasses import fields

import optuna
import pytest

from hpsearch.studyfile import params as P
from hpsearch.studyfile.families import MODEL_PARAMS
from hpsearch.studyfile.schema import load_spec
from hpsearch.training.augment import Augment
from hpsearch.training.space import point, sample, train_config

SPACE = {
    "blocks": {"int": [0, 3]},
    "width": {"int": [8, 64], "log": True},
    "lr": {"float": [1.0e-4, 0.3], "log": True},
    "conv_dropout": {"float": [0.0, 0.5], "step": 0.1},
    "batchnorm": {"choice": [True, False]},
    "bn_momentum": {"float": [0.01, 0.9]},
    "optimizer": {"choice": ["sgd_nesterov", "adamw"]},
    "momentum": {"float": [0.5, 0.99]},
    "head_widths": {"choice": [[], [64], [128, 64]]},
    "augment": {"choice": ["none", "flip_crop", "flip_crop_cutout"]},
    "schedule": {"choice": ["constant", "warmup_linear"]},
    "warmup_fraction": {"float": [0.05, 0.3]},
}


@pytest.fixture
def spec(write_study):
    return load_spec(write_study(space=SPACE, fixed={"batch_size": 32}))


def test_sampled_values_lie_inside_the_declared_bounds(spec):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = []
    for _ in range(200):
        trial = study.ask()
        seen.append(sample(trial, spec))
        study.tell(trial, 0.0)
    for params in seen:
        for name, dist in spec.space.items():
            if name not in params:
                continue
            value = params[name]
            if dist.kind == "choice":
                assert (tuple(value) if isinstance(value, list) else value) in dist.choices
            else:
                assert dist.low <= value <= dist.high
        assert params["batch_size"] == 32  # fixed
        assert params["weight_decay"] == P.BY_NAME["weight_decay"].default  # neither: the default
    assert {p["blocks"] for p in seen} == {0, 1, 2, 3}
    assert all(round(p["conv_dropout"] * 10, 6).is_integer() for p in seen if "conv_dropout" in p)


def test_inactive_parameters_are_neither_sampled_nor_stored(spec):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    for _ in range(100):
        trial = study.ask()
        params = sample(trial, spec)
        study.tell(trial, 0.0)
        stored = study.trials[-1].params
        if params["blocks"] == 0:
            assert "width" not in stored and "batchnorm" not in params
        if params.get("batchnorm") is False:
            assert "bn_momentum" not in stored
        if params["optimizer"] == "adamw":
            assert "momentum" not in stored
        if params["schedule"] == "constant":
            assert "warmup_fraction" not in stored


def test_fixed_trial_drives_the_space(spec):
    trial = optuna.trial.FixedTrial({
        "blocks": 2, "width": 16, "lr": 0.01, "conv_dropout": 0.2, "batchnorm": True, "bn_momentum": 0.3,
        "optimizer": "sgd_nesterov", "momentum": 0.8, "head_widths": "[128, 64]", "augment": "flip_crop",
        "schedule": "warmup_linear", "warmup_fraction": 0.1,
    })
    params = sample(trial, spec)
    assert params["head_widths"] == [128, 64]
    cfg = train_config(params, epochs=5, seed=3)
    assert (cfg.lr, cfg.momentum, cfg.warmup_fraction, cfg.batch_size, cfg.seed) == (0.01, 0.8, 0.1, 32, 3)
    assert cfg.augment.flip and cfg.augment.crop_padding == 4 and cfg.augment.cutout_size == 0


def test_the_family_decides_which_model_parameters_a_trial_has(write_study):
    """A study searching the family samples each family's own parameters only; resnet9's width defaults to Page's."""
    spec = load_spec(write_study(space={"family": {"choice": ["cnn", "resnet9", "resnet18"]},
                                        "blocks": {"int": [1, 3]}, "whiten": {"choice": [0, 2]},
                                        "head_widths": {"choice": [[], [64]]}}, fixed={"dirac_init": True}))
    resnet9 = sample(optuna.trial.FixedTrial({"family": "resnet9", "whiten": 2}), spec)
    assert {k: resnet9[k] for k in ("width", "width_multiplier", "whiten", "dirac_init")} == {
        "width": 64, "width_multiplier": 1.0, "whiten": 2, "dirac_init": True}
    assert not {"blocks", "head_widths", "kernel_size", "conv_dropout"} & resnet9.keys()
    cnn = sample(optuna.trial.FixedTrial({"family": "cnn", "blocks": 2, "whiten": 0, "head_widths": "[64]"}), spec)
    assert cnn["width"] == 32 and cnn["blocks"] == 2 and cnn["head_widths"] == [64] and cnn["whiten"] == 0
    torchvision = sample(optuna.trial.FixedTrial({"family": "resnet18"}), spec)
    assert not MODEL_PARAMS & torchvision.keys()


def test_the_speed_run_recipes_are_searched_recorded_and_reach_the_train_config(write_study):
    spec = load_spec(write_study(space={
        "lr_per_1024": {"float": [0.1, 10.0], "log": True}, "batch_size": {"choice": [64, 256]},
        "augment": {"choice": ["none", "flip_crop"]}, "flip": {"choice": ["random", "alternating"]},
        "ema": {"float": [0.0, 0.99]}, "tta": {"choice": ["none", "flip", "flip_translate"]},
        "bn_bias_lr_scale": {"float": [1.0, 64.0], "log": True}, "bn_weight_decay": {"choice": [True, False]},
    }, fixed={"blocks": 1, "batchnorm": True}))
    params = sample(optuna.trial.FixedTrial({
        "lr_per_1024": 2.0, "batch_size": 256, "augment": "flip_crop", "flip": "alternating", "ema": 0.9,
        "tta": "flip_translate", "bn_bias_lr_scale": 64.0, "bn_weight_decay": False}), spec)
    assert "lr" not in params and params["lr_per_1024"] == 2.0 and params["flip"] == "alternating"
    cfg = train_config(params, epochs=1, seed=0)
    assert cfg.lr == 0.5 and cfg.augment.alternating_flip and (cfg.ema, cfg.tta) == (0.9, "flip_translate")
    assert (cfg.bn_bias_lr_scale, cfg.bn_weight_decay) == (64.0, False)
    no_flip = sample(optuna.trial.FixedTrial({
        "lr_per_1024": 2.0, "batch_size": 64, "augment": "none", "ema": 0.0, "tta": "none",
        "bn_bias_lr_scale": 1.0, "bn_weight_decay": True}), spec)
    assert "flip" not in no_flip  # inactive without the flip op: never sampled
    assert not train_config(no_flip, epochs=1, seed=0).augment.alternating_flip


def test_the_recipes_default_to_today_s_training():
    cfg = train_config({}, epochs=1, seed=0)
    assert (cfg.lr, cfg.ema, cfg.tta, cfg.bn_bias_lr_scale, cfg.bn_weight_decay) == (0.05, 0.0, "none", 1.0, True)
    assert not train_config({"augment": "flip"}, epochs=1, seed=0).augment.alternating_flip
    assert "bn_weight_decay" not in P.complete({"batchnorm": False})  # no BatchNorm: nothing to tune


@pytest.mark.parametrize("params", [{}, {"optimizer": "adam"}, {"schedule": "constant"}, {"batchnorm": False},
                                    {"augment": "flip"}, {"lr_per_1024": 0.4}, {"blocks": 0}])
def test_every_training_setting_a_trial_leaves_out_is_the_parameter_table_s_default(params):
    """One home for each default: a setting the trial does not have (momentum for Adam, warmup_fraction without
    warmup, crop_padding without crops) is the table's, as a given one would be, never a second value."""
    cfg = train_config(params, epochs=1, seed=0)
    named = {f.name for f in fields(cfg) if f.name in P.BY_NAME}
    assert {"momentum", "warmup_fraction", "reused_lr_ratio", "bn_bias_lr_scale", "bn_weight_decay"} <= named
    given = P.complete(params)
    for name in named - {"epochs", "lr"} - given.keys():  # the trial's epochs and its lr (or lr_per_1024) are given
        assert getattr(cfg, name) == P.BY_NAME[name].default, name
    assert cfg.augment == Augment.from_name(given["augment"], crop_padding=P.BY_NAME["crop_padding"].default,
                                            cutout_size=P.BY_NAME["cutout_size"].default,
                                            flip=P.BY_NAME["flip"].default)


def test_epochs_is_searched_or_fixed_per_trial_and_left_out_otherwise(write_study):
    """A trial's own length travels in its params; without it, the trial trains the budget's."""
    searched = load_spec(write_study(budget={"epochs": 25, "trials": 1}, space={"epochs": {"int": [4, 25]}}))
    params = sample(optuna.trial.FixedTrial({"epochs": 6, "lr": 0.05, "width": 8}), searched)
    assert params["epochs"] == P.trial_epochs(params, 25) == 6
    assert train_config(params, epochs=P.trial_epochs(params, 25), seed=0).epochs == 6
    plain = sample(optuna.trial.FixedTrial({"lr": 0.05, "width": 8}), load_spec(write_study()))
    assert "epochs" not in plain and P.trial_epochs(plain, 3) == 3


def test_each_branch_of_a_conditional_range_is_a_parameter_of_its_own(write_study):
    """Adam's learning rates are drawn from Adam's range, under a name the sampler models apart from SGD's."""
    spec = load_spec(write_study(fixed={"batch_size": 32}, space={
        "optimizer": {"choice": ["sgd_nesterov", "adam"]},
        "lr": {"by": "optimizer", "sgd_nesterov": {"float": [0.05, 0.5], "log": True},
               "adam": {"float": [1.0e-4, 1.0e-3], "log": True}}}))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        params = sample(trial, spec)
        low, high = (1.0e-4, 1.0e-3) if params["optimizer"] == "adam" else (0.05, 0.5)
        assert low <= params["lr"] <= high
        assert trial.params == {"optimizer": params["optimizer"], f"lr[optimizer={params['optimizer']}]": params["lr"]}
        study.tell(trial, 0.0)
    assert train_config(sample(optuna.trial.FixedTrial({"optimizer": "adam", "lr[optimizer=adam]": 5e-4}), spec),
                        epochs=1, seed=0).lr == 5e-4


def test_a_config_lies_in_the_space_where_a_point_of_it_gives_exactly_that_config(write_study):
    spec = load_spec(write_study(space={"width": {"int": [4, 16]}, "lr": {"float": [0.01, 0.2], "log": True},
                                        "head_widths": {"choice": [[], [32]]}},
                                 fixed={"blocks": 1, "convs_per_block": 1, "batch_size": 64}))
    inside = P.complete({"blocks": 1, "convs_per_block": 1, "batch_size": 64, "width": 8, "lr": 0.05,
                         "head_widths": [32]})
    at = point(spec, inside)
    assert at.params == {"width": 8, "lr": 0.05, "head_widths": "[32]"} and set(at.distributions) == set(at.params)
    assert sample(optuna.trial.FixedTrial(at.params), spec) == inside
    assert point(spec, {**inside, "lr": 0.5}) is None  # out of its range
    assert point(spec, {**inside, "head_widths": [64]}) is None  # not one of the choices
    assert point(spec, {**inside, "batch_size": 32}) is None  # the space fixes 64
    assert point(spec, P.complete({**inside, "kernel_size": 5})) is None  # neither searched nor fixed at 5
