"""Every parameter a study can search or fix: its type, default, allowed values and when it matters.

One table serves three readers: the study-file validator (names, types, bounds), the search
space (what to sample, in this order, and which parameters are inactive given earlier ones),
and the config builders (defaults for whatever a study leaves out).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from hpsearch.studyfile import plugins
from hpsearch.studyfile.families import BUILDER_PREFIX, FAMILIES, MODEL_PARAMS, Family
from hpsearch.studyfile.param import Param, always, is_int

AUGMENT_OPS = ("flip", "crop", "cutout")


def _augment_choices() -> tuple[str, ...]:
    """'none' and every combination of the ops, joined by '_' in canonical order (flip_crop)."""
    combos = ["_".join(op for i, op in enumerate(AUGMENT_OPS) if mask >> i & 1)
              for mask in range(1, 2 ** len(AUGMENT_OPS))]
    return ("none", *sorted(combos, key=lambda c: (c.count("_"), c)))


MAX_SEED = 2**32 - 1  # numpy's, scikit-learn's and Optuna's samplers' seeds are 32-bit; torch's take 64


def is_seed(v: Any) -> bool:
    return is_int(v) and 0 <= v <= MAX_SEED


def family_row(name: str) -> Family:
    """The family `name` names; one not known here (a plugin not installed) as a row that takes no parameters of
    hpsearch's and keeps whatever model.NAME a config gives, so that a stored trial still reads."""
    return plugins.family(name) or Family(name, "not known here", builder_params=None)


def _family_problem(value: Any) -> str | None:
    if plugins.family(value) is not None:
        return None
    plugin = ", ".join(plugins.plugin_families())
    installed = f", {plugin} (installed plugins' families)" if plugin else ""
    return (f"must be one of {', '.join(FAMILIES)}{installed}, or your own builder's import path, "
            "package.module:function")


def _has_convs(p: Mapping[str, Any]) -> bool:
    return p["blocks"] > 0  # for a family without `blocks` it reads as its default, 3


def _has_batchnorm(p: Mapping[str, Any]) -> bool:
    """Whether the net has BatchNorm layers: the CNN and ResNet-9 say so; of torchvision's, squeezenet has none."""
    if "batchnorm" in family_row(p["family"]).params:
        return _has_convs(p) and p["batchnorm"]
    return p["family"] != "squeezenet1_1"


def _reused(p: Mapping[str, Any]) -> bool:
    return p["pretrained"]


def _augments(op: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda p: op in p["augment"].split("_")


PARAMS: tuple[Param, ...] = (
    # --- model: the network family --------------------------------------------------------
    Param("family", "choice", "cnn", "The network: " + ", ".join(f"{f.name} ({f.about})" for f in FAMILIES.values())
          + "; an installed plugin's family; or your own, as its builder's import path, package.module:function "
          "(`model.NAME` then searches or fixes its parameters); init: weights loads trained weights from a local "
          "file.", choices=tuple(FAMILIES), architecture=True, check=_family_problem),
    # --- model: convolutional trunk -------------------------------------------------------
    Param("blocks", "int", 3, "Conv blocks (conv layers then a pool); 0 gives a fully connected net.", low=0, high=8,
          architecture=True),
    Param("convs_per_block", "int", 2, "Conv layers in each block.", low=1, high=6, active=_has_convs,
          architecture=True),
    Param("widths", "ints", None, "Filters per block, one entry per block (overrides width and width_growth).",
          low=1, active=_has_convs, architecture=True),
    Param("width", "int", 32, "Filters in the first block (resnet9: its prep conv; each stage doubles them).",
          low=1, high=4096,
          active=lambda p: _has_convs(p) and p["widths"] is None, architecture=True),
    Param("width_growth", "float", 2.0, "Each block has this many times the filters of the one before.",
          low=0.25, high=8.0, active=lambda p: p["blocks"] > 1 and p["widths"] is None, architecture=True),
    Param("width_multiplier", "float", 1.0, "Every conv's filters times this (rounded, at least 1), widths given "
          "or grown: one axis that scales a whole net.", low=0.01, high=64.0, active=_has_convs, architecture=True),
    Param("kernel_size", "int", 3, "Conv kernel size (square).", low=1, high=15, active=_has_convs,
          architecture=True),
    Param("kernel_sizes", "ints", None, "Kernel size per block (overrides kernel_size).", low=1, active=_has_convs,
          architecture=True),
    Param("padding", "choice", "same", "'same' keeps the spatial size through a conv, 'valid' shrinks it.",
          choices=("same", "valid"), active=_has_convs, architecture=True),
    Param("pool", "choice", "max", "Pooling at the end of each block.", choices=("max", "avg", "none"),
          active=_has_convs, architecture=True),
    Param("pool_size", "int", 2, "Pooling window and stride.", low=1, high=8,
          active=lambda p: _has_convs(p) and p["pool"] != "none", architecture=True),
    Param("pool_sizes", "ints", None, "Pool size per block (overrides pool_size).", low=1,
          active=lambda p: _has_convs(p) and p["pool"] != "none", architecture=True),
    Param("batchnorm", "bool", True, "BatchNorm after every conv.", active=_has_convs, architecture=True),
    Param("bn_momentum", "float", 0.1, "BatchNorm running-average momentum (PyTorch meaning: weight of the new batch).",
          low=0.0, high=1.0, active=lambda p: _has_convs(p) and p["batchnorm"]),
    Param("conv_dropout", "float", 0.0, "Dropout probability after each conv block.", low=0.0, high=1.0,
          high_open=True, active=_has_convs),
    Param("conv_dropout_at", "choice", "all", "Dropout after every conv block, or after the last one only.",
          choices=("all", "last"), active=lambda p: _has_convs(p) and p["conv_dropout"] > 0),
    Param("global_pool", "choice", "none", "Collapse the last feature map by a global pool before the head, "
          "or flatten it ('none').", choices=("none", "avg", "max"), active=_has_convs, architecture=True),
    # --- model: head --------------------------------------------------------------------
    Param("head_widths", "ints", [], "Hidden fully connected layers before the output layer, e.g. [512].", low=1,
          architecture=True),
    Param("head_dropout", "float", 0.0, "Dropout probability after each hidden fully connected layer.",
          low=0.0, high=1.0, high_open=True, active=lambda p: len(p["head_widths"]) > 0),
    Param("head_dropout_at", "choice", "all", "Dropout after every hidden layer, or only before the output layer.",
          choices=("all", "last"), active=lambda p: len(p["head_widths"]) > 0 and p["head_dropout"] > 0),
    Param("output", "choice", "softmax", "Softmax over the classes with cross-entropy, or (two classes only) "
          "one sigmoid logit with binary cross-entropy.", choices=("softmax", "sigmoid")),
    Param("activation", "choice", "relu", "Activation after every conv and hidden layer.",
          choices=("relu", "gelu", "silu", "elu", "leaky_relu", "tanh"), architecture=True),
    # --- model: data-dependent and identity initialisation (airbench) -----------------------
    Param("whiten", "int", 0, "Patch side k of a frozen first conv that whitens the training images' k x k "
          "patches (2 x C x k x k outputs: each direction and its negation, then the activation); 0: none.",
          low=0, high=7, active=_has_convs, architecture=True),
    Param("dirac_init", "bool", False, "Start every conv with at least as many outputs as inputs as the identity "
          "on its first in_channels outputs (the rest keep their random init).", active=_has_convs,
          architecture=True),
    # --- transfer: a study with init: starts from a trained model -------------------------
    Param("pretrained", "bool", False, "Start from the init: model's weights (true, the default in a study with "
          "init:) or train the same architecture from scratch (false).", transfer=True),
    Param("reinit_convs", "int", 0, "Re-initialise the first k conv layers (Conv2d in model order, the output "
          "layer excluded) instead of keeping their trained weights.", low=0, high=1000, active=_reused,
          transfer=True),
    Param("freeze_convs", "int", 0, "Freeze the first k conv layers that keep their trained weights (those after "
          "the re-initialised ones), with the BatchNorm after each.", low=0, high=1000, active=_reused,
          transfer=True),
    Param("freeze_hidden", "bool", False, "Freeze the reused hidden fully connected layers of the head (the "
          "output layer is always new).", active=lambda p: _reused(p) and len(p["head_widths"]) > 0,
          transfer=True),
    Param("reused_lr_ratio", "float", 1.0, "Learning rate of the reused layers as a fraction of lr (the new "
          "output layer and re-initialised layers train at lr).", low=0.0, high=10.0, active=_reused,
          transfer=True),
    # --- training -------------------------------------------------------------------------
    Param("epochs", "int", None, "Epochs the trial trains, its learning-rate schedule laid over them; at most "
          "budget.epochs, the default (baselines always train budget.epochs): search it to find a short recipe.",
          low=1),
    Param("optimizer", "choice", "sgd_nesterov", "Optimizer.", choices=("sgd_nesterov", "sgd", "adam", "adamw")),
    Param("lr_per_1024", "float", None, "Peak learning rate per 1,024 examples: lr = lr_per_1024 x batch_size / "
          "1024, so a search over batch sizes keeps the lr per example (replaces lr; give one of them).",
          low=1e-7, high=1000.0),
    Param("lr", "float", 0.05, "Peak learning rate.", low=1e-7, high=100.0, active=lambda p: p["lr_per_1024"] is None),
    Param("momentum", "float", 0.9, "SGD momentum.", low=0.0, high=1.0, high_open=True,
          active=lambda p: p["optimizer"].startswith("sgd")),
    Param("weight_decay", "float", 5e-4, "L2 weight decay (decoupled for adamw).", low=0.0, high=1.0),
    Param("batch_size", "int", 128, "Training batch size.", low=1, high=65536),
    Param("bn_bias_lr_scale", "float", 1.0, "Learning rate of the BatchNorm biases as a multiple of lr, their weight "
          "decay divided by it so the decay per step is unchanged (Page's ResNet-9 and airbench: 64).",
          low=1e-3, high=1000.0, active=_has_batchnorm),
    Param("bn_weight_decay", "bool", True, "Weight decay on the BatchNorm weights and biases (false: none).",
          active=_has_batchnorm),
    Param("schedule", "choice", "cosine", "Learning-rate schedule over the trial's steps.",
          choices=("constant", "cosine", "warmup_linear")),
    Param("warmup_fraction", "float", 0.2, "Fraction of the steps spent warming up linearly from zero.",
          low=0.0, high=1.0, high_open=True, active=lambda p: p["schedule"] == "warmup_linear"),
    Param("label_smoothing", "float", 0.0, "Label smoothing of the cross-entropy loss.", low=0.0, high=1.0,
          high_open=True),
    Param("augment", "choice", "none", "Training augmentation, done on the device over whole batches.",
          choices=_augment_choices()),
    Param("flip", "choice", "random", "How the flip chooses: each image by a coin every epoch, or 'alternating' "
          "(airbench): by a coin in the first epoch, then each image's flip toggled every epoch.",
          choices=("random", "alternating"), active=_augments("flip")),
    Param("crop_padding", "int", 4, "Pixels of zero padding for random crops.", low=1, high=64,
          active=_augments("crop")),
    Param("cutout_size", "int", 8, "Side of the square cut out of each image.", low=1, high=512,
          active=_augments("cutout")),
    # --- evaluation -----------------------------------------------------------------------
    Param("ema", "float", 0.0, "Decay per step of an exponential moving average of the weights (and BatchNorm "
          "statistics) that validation, test and the kept weights use (update n decays by min(ema, (n + 1) / (n + 10))); "
          "0: the trained weights themselves.",
          low=0.0, high=1.0, high_open=True),
    Param("tta", "choice", "none", "Test-time augmentation of validation and test: average the logits of each "
          "image and its mirror ('flip'), and of both shifted one pixel diagonally ('flip_translate', airbench).",
          choices=("none", "flip", "flip_translate")),
)

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
# Parameters every trial has, whatever the others say: what a conditional parameter may be searched `by`.
ALWAYS_ACTIVE: frozenset[str] = frozenset(p.name for p in PARAMS if p.active is always and p.name not in MODEL_PARAMS)
ARCHITECTURE: frozenset[str] = frozenset(p.name for p in PARAMS if p.architecture)
TRANSFER: frozenset[str] = frozenset(p.name for p in PARAMS if p.transfer)


def resolve(choose: Callable[[Param], Any], builder_names: Iterable[str] = ()) -> dict[str, Any]:
    """The complete, canonical params dict of a trial: `choose` gives each active parameter's value.

    Parameters are visited in table order, so `choose` may depend on (and `active` reads) the
    values chosen before; inactive parameters are neither chosen nor stored, and read as their
    defaults. `family` comes first: the parameters it does not take are inactive, and those it has
    its own default for (resnet9's width) reach `choose` with that default. A family built by code
    outside hpsearch takes its builder's parameters (model.NAME), visited last: a plugin's declared
    ones, or for a study's own builder, `builder_names`, those its study file or config gives.
    """
    resolved: dict[str, Any] = {}
    for param in PARAMS:
        family = family_row(resolved.get("family", BY_NAME["family"].default))
        param = for_family(param, family.name)
        if param.name in MODEL_PARAMS and param.name not in family.params:
            continue
        if param.active(_read_as_defaults(resolved)):
            value = choose(param)
            if value is not None:  # None: an optional override (widths, kernel_sizes) left out
                resolved[param.name] = value
    for param in builder_params(resolved["family"], builder_names):
        if (value := choose(param)) is not None:  # None: a builder parameter not given (the builder's default)
            resolved[param.name] = value
    return resolved


def builder_params(family: str, names: Iterable[str] = ()) -> tuple[Param, ...]:
    """The parameters (model.NAME) of `family`'s builder: its declared ones, or those in `names` where it
    declares none (a study's own builder). Every one is an architecture parameter: it decides the model."""
    row = family_row(family)
    if row.builder_params is None:
        return tuple(builder_param(name) for name in dict.fromkeys(names) if name.startswith(BUILDER_PREFIX))
    return tuple(replace(p, name=BUILDER_PREFIX + p.name, architecture=True) for p in row.builder_params)


def builder_param(name: str) -> Param:
    """A parameter of a builder that declares none, typed by what the study file gives it."""
    return Param(name, "any", None, "a parameter of the model's builder", architecture=True)


def lookup(name: str) -> Param | None:
    """The parameter `name` names: hpsearch's, or any model.NAME (a builder's, declared or not); None if neither."""
    if name in BY_NAME:
        return BY_NAME[name]
    if name.startswith(BUILDER_PREFIX) and name.removeprefix(BUILDER_PREFIX).isidentifier():
        return builder_param(name)
    return None


def is_architecture(name: str) -> bool:
    """Whether the parameter `name` decides the layers and their weights (a builder's always does)."""
    return name in ARCHITECTURE or name.startswith(BUILDER_PREFIX)


def _read_as_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter: its value in `values`, else its default (its family's own, where it has one)."""
    family = values.get("family", BY_NAME["family"].default)
    return {p.name: values.get(p.name, for_family(p, family).default) for p in PARAMS}


def trial_epochs(params: Mapping[str, Any], budget: int) -> int:
    """The epochs a trial with these params trains: its own `epochs` where searched or fixed, else the budget's."""
    return params.get("epochs") or budget


def for_family(param: Param, family: str) -> Param:
    """`param` with the family's own default, where it has one."""
    defaults = family_row(family).defaults
    return replace(param, default=defaults[param.name]) if param.name in defaults else param


def complete(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with defaults filled in and inactive parameters dropped."""
    return resolve(lambda p: values.get(p.name, p.default), values)


def settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` completed, and every inactive parameter at its default: what a config builder reads, which sets each
    of its fields whether or not the parameter has an effect (an inactive one has none). The table is the one home
    of every default."""
    return _read_as_defaults(complete(values))


def with_architecture(params: Mapping[str, Any], architecture: Mapping[str, Any] | None) -> dict[str, Any]:
    """`params` completed, with its architecture parameters replaced by those of `architecture`."""
    if architecture is None:
        return complete(params)
    return complete({**{k: v for k, v in params.items() if not is_architecture(k)},
                       **{k: v for k, v in architecture.items() if is_architecture(k)}})


def stored_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's params as Optuna stores them, with list parameters (head_widths, or a branch of it such as
    head_widths[family=cnn]) back as lists."""
    return {k: json.loads(v) if getattr(BY_NAME.get(k.partition("[")[0]), "kind", None) == "ints" and isinstance(v, str)
            else v for k, v in params.items()}
