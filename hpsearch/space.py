"""A study's space + an Optuna trial -> a params dict -> ModelConfig and TrainConfig.

`sample` is the only place that talks to the trial, so it can be driven by a real trial, an
`optuna.trial.FixedTrial` in tests, or a stored trial's params when a config is rebuilt.
Parameters that have no effect given earlier ones (momentum for Adam, bn_momentum without
BatchNorm) are not sampled: the sampler never wastes trials on them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna

from hpsearch import params as P
from hpsearch.augment import Augment
from hpsearch.models import ArchitectureError, ModelConfig
from hpsearch.train import TrainConfig

if TYPE_CHECKING:
    from hpsearch.spectypes import Distribution, StudySpec


def sample(trial: optuna.trial.BaseTrial, spec: StudySpec,
           architecture: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every active parameter's value for this trial: fixed, sampled, or the default.

    In a study that starts from a trained model, `architecture` is that model's config: its
    architecture parameters are taken, never searched, so that the trained weights fit; and
    `pretrained` defaults to true there.
    """

    def choose(param: P.Param) -> Any:
        if architecture is not None and param.architecture:
            return architecture.get(param.name, param.default)
        if param.name in spec.fixed:
            return spec.fixed[param.name]
        if param.name in spec.space:
            return _suggest(trial, param, spec.space[param.name])
        if param.name == "pretrained" and spec.init is not None:
            return True
        return param.default

    return P.resolve(choose)


def with_architecture(params: Mapping[str, Any], architecture: Mapping[str, Any] | None) -> dict[str, Any]:
    """`params` completed, with its architecture parameters replaced by those of `architecture`."""
    if architecture is None:
        return P.complete(params)
    return P.complete({**{k: v for k, v in params.items() if k not in P.ARCHITECTURE},
                       **{k: v for k, v in architecture.items() if k in P.ARCHITECTURE}})


def _suggest(trial: optuna.trial.BaseTrial, param: P.Param, dist: Distribution) -> Any:
    if dist.kind == "int":
        return trial.suggest_int(param.name, int(dist.low), int(dist.high), step=int(dist.step or 1), log=dist.log)
    if dist.kind == "float":
        return trial.suggest_float(param.name, dist.low, dist.high, step=dist.step, log=dist.log)
    if param.kind == "ints":  # Optuna's choices are scalars: lists travel as their JSON text
        return json.loads(trial.suggest_categorical(param.name, [json.dumps(list(c)) for c in dist.choices]))
    return trial.suggest_categorical(param.name, list(dist.choices))


def model_config(params: Mapping[str, Any], input_shape: tuple[int, int, int], num_classes: int) -> ModelConfig:
    p = P.complete(params)
    if p["family"] != "cnn":
        return ModelConfig(input_shape=input_shape, num_classes=num_classes, family=p["family"], output=p["output"])
    blocks = p["blocks"]
    head = dict(head_widths=tuple(p["head_widths"]), head_dropout=p.get("head_dropout", 0.0),
                head_dropout_at=p.get("head_dropout_at", "all"), output=p["output"], activation=p["activation"])
    if blocks == 0:
        return ModelConfig(input_shape=input_shape, num_classes=num_classes, **head)
    widths = p.get("widths") or [max(1, round(p["width"] * p.get("width_growth", 1.0) ** i)) for i in range(blocks)]
    kernel_sizes = p.get("kernel_sizes") or [p["kernel_size"]] * blocks
    pool_sizes = p.get("pool_sizes") or [p.get("pool_size", 1)] * blocks
    for name, values in (("widths", widths), ("kernel_sizes", kernel_sizes), ("pool_sizes", pool_sizes)):
        if len(values) != blocks:
            raise ArchitectureError(f"{name} has {len(values)} entries but blocks is {blocks}: give one per block")
    return ModelConfig(
        input_shape=input_shape,
        num_classes=num_classes,
        widths=tuple(widths),
        convs_per_block=p["convs_per_block"],
        kernel_sizes=tuple(kernel_sizes),
        padding=p["padding"],
        pool=p["pool"],
        pool_sizes=tuple(pool_sizes),
        batchnorm=p["batchnorm"],
        bn_momentum=p.get("bn_momentum", 0.1),
        conv_dropout=p["conv_dropout"],
        conv_dropout_at=p.get("conv_dropout_at", "all"),
        global_pool=p["global_pool"],
        **head,
    )


def train_config(params: Mapping[str, Any], *, epochs: int, seed: int) -> TrainConfig:
    p = P.complete(params)
    return TrainConfig(
        epochs=epochs,
        batch_size=p["batch_size"],
        optimizer=p["optimizer"],
        lr=p["lr"],
        momentum=p.get("momentum", 0.0),
        weight_decay=p["weight_decay"],
        schedule=p["schedule"],
        warmup_fraction=p.get("warmup_fraction", 0.0),
        label_smoothing=p["label_smoothing"],
        reused_lr_ratio=p.get("reused_lr_ratio", 1.0),
        augment=Augment.from_name(p["augment"], crop_padding=p.get("crop_padding", 0),
                                  cutout_size=p.get("cutout_size", 0)),
        seed=seed,
    )
