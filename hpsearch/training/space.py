"""A study's space + an Optuna trial -> a params dict -> ModelConfig and TrainConfig.

`sample` is the only place that talks to the trial, so it can be driven by a real trial, an
`optuna.trial.FixedTrial` in tests, or a stored trial's params when a config is rebuilt.
Parameters that have no effect given earlier ones (momentum for Adam, bn_momentum without
BatchNorm) are not sampled: the sampler never wastes trials on them.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

import optuna
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from torch import nn

from hpsearch.studyfile import params as P
from hpsearch.studyfile.families import BUILDER_PREFIX
from hpsearch.training.augment import Augment
from hpsearch.training.models import ArchitectureError, ModelConfig, build_model
from hpsearch.training.train import TrainConfig

from hpsearch.studyfile.types import Conditional

if TYPE_CHECKING:
    from hpsearch.studyfile.baselines import Baseline
    from hpsearch.studyfile.types import Distribution, StudySpec


def sample(trial: optuna.trial.BaseTrial, spec: StudySpec,
           architecture: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every active parameter's value for this trial: fixed, sampled, or the default.

    In a study that starts from a trained model, `architecture` is that model's config: its
    architecture parameters are taken, never searched, so that the trained weights fit; and
    `pretrained` defaults to true there. A study's own model builder takes the model.NAME parameters
    its space and fixed give (or the architecture's), in the study file's order.
    """

    chosen: dict[str, Any] = {}
    convs = _reusable_convs(spec, architecture) if P.TRANSFER & spec.space.keys() else None

    def choose(param: P.Param) -> Any:
        if architecture is not None and param.architecture:
            value = architecture.get(param.name, param.default)
        elif param.name in spec.fixed:
            value = spec.fixed[param.name]
        elif param.name in spec.space:
            name, dist = _distribution(spec, param.name, chosen)
            if convs is not None and param.name in ("reinit_convs", "freeze_convs"):
                dist = _within(dist, convs - chosen.get("reinit_convs", 0))  # the source has no more to count
            value = _suggest(trial, name, dist)
        elif param.name == "pretrained" and spec.init is not None:
            value = True
        else:
            value = param.default
        chosen[param.name] = value
        return value

    return P.resolve(choose, [*spec.space, *spec.fixed, *(architecture or ())])


def _distribution(spec: StudySpec, name: str, chosen: Mapping[str, Any]) -> tuple[str, Distribution]:
    """The sampler's name for a searched parameter and its distribution, given the values chosen before it
    (a conditional parameter's branch is decided by one of them, always chosen: schema checks it)."""
    dist = spec.space[name]
    return dist.branch(name, chosen[dist.by]) if isinstance(dist, Conditional) else (name, dist)


def point(spec: StudySpec, params: Mapping[str, Any], architecture: Mapping[str, Any] | None = None
          ) -> optuna.trial.FixedTrial | None:
    """The point of the study's space that gives exactly `params`, a complete config, as a FixedTrial holding
    the sampler's params there (the names and values `sample` suggests) and their distributions; None where no
    point gives it: a value outside its range or choices, or a parameter the space neither searches nor fixes
    at the config's value. A baseline or another study's trial that lies in the space is an observation of it
    there."""
    try:
        given = {}
        for name in spec.space.keys() & params.keys():
            key, _ = _distribution(spec, name, params)
            given[key] = _as_choice(params[name])
        fixed = optuna.trial.FixedTrial(given)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # FixedTrial only warns of a value out of a range
            resolved = sample(fixed, spec, architecture)
    except (KeyError, ValueError, Warning):  # no such branch, a value outside a choice, a range, or not given
        return None
    return fixed if resolved == dict(params) and fixed.params == given else None


def _reusable_convs(spec: StudySpec, architecture: Mapping[str, Any] | None) -> int | None:
    """How many conv layers a transfer trial can re-initialise or freeze (the output layer excluded),
    or None where the architecture varies by trial (each trial then checks its own)."""
    if architecture is None and any(P.is_architecture(name) for name in spec.space):
        return None
    p = P.complete(architecture if architecture is not None else spec.fixed)
    channels = P.family_row(p["family"]).channels or 3
    try:
        with torch.device("meta"):  # count its layers, no weights allocated, on an image any family takes
            model = build_model(model_config(p, (channels, _ANY_SIDE, _ANY_SIDE), 2))
    except ArchitectureError:
        return None  # even this image does not fit it: each trial checks its own
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return sum(isinstance(m, nn.Conv2d) for m in layers[:-1])  # the last is the output layer


_ANY_SIDE = 4096  # an image side every sensible architecture takes (8 blocks of pool 2 leave 16)


def _within(dist: Distribution, high: int) -> Distribution:
    """An int distribution cut down to at most `high` (and its low with it, where that exceeds high)."""
    if dist.kind != "int" or dist.high <= high:
        return dist
    return replace(dist, low=min(dist.low, high), high=high)


def distribution(dist: Distribution) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution a parameter is sampled from: what a study records of its space (search/studystore.py)."""
    if dist.kind == "int":
        return IntDistribution(int(dist.low), int(dist.high), step=int(dist.step or 1), log=dist.log)
    if dist.kind == "float":
        return FloatDistribution(dist.low, dist.high, step=dist.step, log=dist.log)
    return CategoricalDistribution([_as_choice(c) for c in dist.choices])


def _as_choice(value: Any) -> Any:
    """A value as Optuna's choices hold it: scalars, so a list (head_widths, a builder's) travels as its JSON text."""
    return json.dumps(list(value)) if isinstance(value, (list, tuple)) else value


def _suggest(trial: optuna.trial.BaseTrial, name: str, dist: Distribution) -> Any:
    """A value from `dist`, sampled as the sampler parameter `name` (a parameter's, or a branch's: lr[optimizer=adam])."""
    optuna_dist = distribution(dist)
    if isinstance(optuna_dist, IntDistribution):
        return trial.suggest_int(name, optuna_dist.low, optuna_dist.high, step=optuna_dist.step, log=optuna_dist.log)
    if isinstance(optuna_dist, FloatDistribution):
        return trial.suggest_float(name, optuna_dist.low, optuna_dist.high, step=optuna_dist.step, log=optuna_dist.log)
    choice = trial.suggest_categorical(name, optuna_dist.choices)
    return json.loads(choice) if isinstance(dist.choices[optuna_dist.choices.index(choice)], tuple) else choice


def model_config(params: Mapping[str, Any], input_shape: tuple[int, int, int], num_classes: int) -> ModelConfig:
    """The ModelConfig of a trial's params: the parameters its family takes, under their own names,
    with the per-block lists (widths, kernel_sizes, pool_sizes) spelled out for each of its stages."""
    p = P.complete(params)
    config = {f.name: p[f.name] for f in fields(ModelConfig) if f.name in p}
    config["builder_params"] = {k.removeprefix(BUILDER_PREFIX): v for k, v in p.items() if k.startswith(BUILDER_PREFIX)}
    stages = p.get("blocks", P.family_row(p["family"]).stages)
    if "width" in p or "widths" in p:
        every = P.settings(params)
        grown = (p["widths"] if p.get("widths") is not None
                 else [p["width"] * every["width_growth"] ** i for i in range(stages)])
        config["widths"] = [max(1, round(w * every["width_multiplier"])) for w in grown]
    for name, single in (("kernel_sizes", "kernel_size"), ("pool_sizes", "pool_size")):
        if single in p:
            config[name] = p.get(name) or [p[single]] * stages
    for name in ("widths", "kernel_sizes", "pool_sizes"):
        if name in config and len(config[name]) != stages:
            raise ArchitectureError(f"{name} has {len(config[name])} entries but blocks is {stages}: give one per block")
    return ModelConfig(input_shape=input_shape, num_classes=num_classes,
                       **{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


def train_config(params: Mapping[str, Any], *, epochs: int, seed: int) -> TrainConfig:
    """The TrainConfig of a trial's params; a parameter it leaves out (or that has no effect) at the table's default."""
    p = P.settings(params)
    per_1024 = p["lr_per_1024"]
    return TrainConfig(
        epochs=epochs,
        batch_size=p["batch_size"],
        optimizer=p["optimizer"],
        lr=p["lr"] if per_1024 is None else per_1024 * p["batch_size"] / 1024,
        momentum=p["momentum"],
        weight_decay=p["weight_decay"],
        schedule=p["schedule"],
        warmup_fraction=p["warmup_fraction"],
        label_smoothing=p["label_smoothing"],
        reused_lr_ratio=p["reused_lr_ratio"],
        bn_bias_lr_scale=p["bn_bias_lr_scale"],
        bn_weight_decay=p["bn_weight_decay"],
        augment=Augment.from_name(p["augment"], crop_padding=p["crop_padding"], cutout_size=p["cutout_size"],
                                  flip=p["flip"]),
        ema=p["ema"],
        tta=p["tta"],
        seed=seed,
    )


# Study-file parameters that decide whether the images survive the conv blocks.
_SIZE_PARAMS = frozenset({"family", "blocks", "convs_per_block", "widths", "kernel_size", "kernel_sizes", "padding",
                          "pool", "pool_size", "pool_sizes", "output", "whiten"})


def fixed_architecture_problem(fixed: Mapping[str, Any], searched: set[str], input_shape: tuple[int, int, int],
                               num_classes: int) -> str | None:
    """Why the fixed architecture cannot take this input, naming what would; None if it can, or if a
    searched parameter decides it (each trial is then checked on its own and may fail)."""
    if searched & _SIZE_PARAMS:
        return None
    p = P.complete(fixed)
    why = _build_problem(p, input_shape, num_classes)
    if why is None or "shrinks to nothing" not in why:
        return why
    would_fit = []
    if not any(p.get(k) for k in ("widths", "kernel_sizes", "pool_sizes")):
        fewer = [b for b in range(p["blocks"]) if not _build_problem({**p, "blocks": b}, input_shape, num_classes)]
        would_fit += [f"blocks {max(fewer)} or fewer"] if fewer else []
    smaller_pools = [("pool_size", size) for size in range(p.get("pool_size", 1) - 1, 1, -1)]
    for key, value in (("padding", "same"), *smaller_pools, ("pool", "none"), ("whiten", 0)):
        if p.get(key, value) != value and not _build_problem({**p, key: value}, input_shape, num_classes):
            would_fit.append(f"{key} {value}")
            if key == "pool_size":
                break  # the largest pool that fits
    where = why.split(" (")[0]  # "the 8x8 input shrinks to nothing at the pool of block 4"
    return f"{where}; it would fit with {', or with '.join(would_fit)}" if would_fit else why


def _build_problem(params: Mapping[str, Any], input_shape: tuple[int, int, int], num_classes: int) -> str | None:
    try:
        with torch.device("meta"):  # shapes only
            build_model(model_config(params, input_shape, num_classes))
    except ArchitectureError as exc:
        return str(exc)
    return None


def fit_problem(baseline: Baseline, input_shape: tuple[int, int, int], num_classes: int,
                architecture: Mapping[str, Any] | None = None) -> str | None:
    """Why `baseline` cannot run on data of this shape and class count (with the architecture of a
    study's init: model, if given), or None if it can."""
    try:
        _build_on_meta(baseline.config(architecture), input_shape, num_classes)
    except ArchitectureError as exc:
        return str(exc)
    return None


def _build_on_meta(params: Mapping[str, Any], input_shape: tuple[int, int, int], num_classes: int) -> torch.nn.Module:
    """The model with shapes but no storage: checking a 150M-parameter net costs nothing."""
    with torch.device("meta"):
        return build_model(model_config(params, input_shape, num_classes))

