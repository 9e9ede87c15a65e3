"""The seed reports' hand-made models as named parameter sets of the one parameterised CNN.

Each baseline runs as a fixed trial inside a study's own pipeline and budget, so every study
shows how far the search gets beyond what people built by hand. Where a report states a
parameter count, the model built here matches it exactly on the report's own input (tests check
each). Where a report is silent, the conventional choice is made and written in `choices`.
Transfer baselines (report 000's fine-tuning experiments) run only in a study with init:, where
they start from its trained model and take its architecture; their own is the report's, for the
counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpsearch.studyfile import params as P

CIFAR = (3, 32, 32)

# Training as the reports did it, unless a baseline says otherwise: no schedule, no weight decay,
# no augmentation, no BatchNorm. hpsearch's own defaults (cosine, 5e-4, BatchNorm) must not leak in.
_PLAIN = {"batchnorm": False, "schedule": "constant", "weight_decay": 0.0, "augment": "none",
          "conv_dropout": 0.0, "head_dropout": 0.0, "label_smoothing": 0.0}
_KERAS_SGD = {"optimizer": "sgd_nesterov", "momentum": 0.9, "lr": 0.01, "weight_decay": 1e-6, "batch_size": 32}
_TORCH_TUTORIAL_SGD = {"optimizer": "sgd", "momentum": 0.9, "lr": 0.001}


@dataclass(frozen=True)
class Baseline:
    name: str
    report: str  # which report and section
    dataset: str  # the dataset the report trained it on
    input_shape: tuple[int, int, int]  # the report's input, on which `param_count` holds
    num_classes: int
    params: Mapping[str, Any]  # hpsearch parameters, complete with _PLAIN where the report is silent
    reported: str  # the report's own words for its result
    reported_accuracy: float | None  # that result as a fraction, None where only a figure exists
    reported_metric: str = "test"  # "test" or "val"
    param_count: int | None = None  # as stated in the report
    built_count: int = 0  # as built here on `input_shape` (tests rebuild each), so listing them needs no torch
    choices: str = ""  # what the report left open and what was picked
    transfer: bool = False  # starts from a study's init: model (params say what is reused and frozen)
    trainable_count: int | None = None  # parameters left to train, as stated in the report

    def config(self, architecture: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every parameter's value, defaults included: what the baseline trial trains. In a study
        with init:, `architecture` is the source model's config and replaces the baseline's own."""
        return P.with_architecture(self.params, architecture)


def _baseline(name: str, params: Mapping[str, Any], **info: Any) -> Baseline:
    return Baseline(name=name, params={**_PLAIN, **params}, **info)


_SEED001_CNN = {"blocks": 2, "convs_per_block": 2, "widths": [32, 64], "kernel_size": 3, "padding": "valid",
                "pool": "max", "pool_size": 2, "head_widths": [512], "activation": "relu",
                **_TORCH_TUTORIAL_SGD, "batch_size": 32}
_SEED002_CNN = {"blocks": 3, "convs_per_block": 1, "widths": [32, 64, 120], "kernel_sizes": [5, 4, 2],
                "pool_sizes": [2, 3, 2], "padding": "valid", "pool": "max", "head_widths": [120],
                "activation": "relu", **_KERAS_SGD}
_SEED003_3BLOCK = {"blocks": 3, "convs_per_block": 2, "widths": [32, 64, 128], "kernel_size": 3,
                   "padding": "same", "pool": "max", "pool_size": 2, "head_widths": [], "activation": "relu",
                   **_TORCH_TUTORIAL_SGD, "batch_size": 4}
_SEED004 = {"optimizer": "sgd", "momentum": 0.9, "lr": 1e-4, "batch_size": 256, "activation": "relu"}
_SEED004_CNN = {"blocks": 4, "convs_per_block": 1, "widths": [32, 32, 32, 64], "kernel_size": 3, "padding": "valid",
                "pool": "max", "pool_sizes": [1, 1, 1, 2], "head_widths": [4096, 4096], **_SEED004}
_SEED004_WIDE = {**_SEED004_CNN, "widths": [128, 128, 128, 256]}

_SEED000 = {"blocks": 3, "convs_per_block": 1, "widths": [32, 64, 128], "kernel_size": 3, "padding": "valid",
            "pool": "max", "pool_size": 2, "conv_dropout": 0.5, "conv_dropout_at": "last", "head_widths": [512],
            "output": "sigmoid", "activation": "relu", "optimizer": "adam", "lr": 1e-3, "batch_size": 32}
_KERAS_TUTORIAL = ("the Keras cats-vs-dogs tutorial's Adam lr 1e-3 and batch 32; dropout 0.5 after the last block, "
                   "one sigmoid output")
# Report 000's experiments 1-4 on cats vs dogs: its own net at 180x180 gives the counts; in a transfer study
# the architecture is the source model's and only how its weights are used differs between them.
_SEED000_TRANSFER = dict(dataset="imagefolder", input_shape=(3, 180, 180), num_classes=2, reported_metric="val",
                         param_count=26_308_673, transfer=True)

_UNSTATED_SGD = "optimizer and batch size not stated: SGD momentum 0.9, lr 0.001 (1.3.7 doubles it to 0.002), batch 32"
_KERAS = "Keras defaults where silent: batch 32; weight decay 1e-6 as stated"
_TUTORIAL = ("the PyTorch CIFAR-10 tutorial's training: SGD lr 0.001, momentum 0.9, batch 4 "
             "(its widths 32/64/128 are not stated)")

BASELINES: dict[str, Baseline] = {b.name: b for b in (
    _baseline("seed001-cnn", _SEED001_CNN, report="001 §1.2", dataset="cifar10", input_shape=CIFAR, num_classes=10,
              reported="best val 74.8% (epoch 18); test 73.67%", reported_accuracy=0.7367, param_count=890_410,
              choices=_UNSTATED_SGD, built_count=890_410),
    _baseline("seed001-cnn-dropout", {**_SEED001_CNN, "conv_dropout": 0.5}, report="001 §1.3.5", dataset="cifar10",
              input_shape=CIFAR, num_classes=10, reported="best val 83.0% with p = 0.5 (100 epochs)",
              reported_accuracy=0.830, reported_metric="val", param_count=890_410,
              choices="p = 0.5 (the best of 0.2/0.5/0.8) after each pool; " + _UNSTATED_SGD, built_count=890_410),
    _baseline("seed001-cnn-80", {**_SEED001_CNN, "conv_dropout": 0.5, "head_dropout": 0.5, "lr": 0.002},
              report="001 §1.3.7", dataset="cifar10", input_shape=CIFAR, num_classes=10,
              reported="test 81.79% (100 epochs)", reported_accuracy=0.8179, param_count=890_410,
              choices="dropout 0.5 after each pool and after fc1; " + _UNSTATED_SGD, built_count=890_410),
    _baseline("seed002-fc", {"blocks": 0, "head_widths": [3072, 1000], "activation": "tanh", **_KERAS_SGD},
              report="002 Q2", dataset="cifar10", input_shape=CIFAR, num_classes=10, reported="test ≈47%",
              reported_accuracy=0.47, param_count=12_523_266, choices=_KERAS, built_count=12_523_266),
    _baseline("seed002-cnn", _SEED002_CNN, report="002 Q4", dataset="cifar10", input_shape=CIFAR, num_classes=10,
              reported="test 63.07%", reported_accuracy=0.6307, param_count=81_834, choices=_KERAS, built_count=81_834),
    _baseline("seed002-cnn-dropout", {**_SEED002_CNN, "conv_dropout": 0.2}, report="002 Q5", dataset="cifar10",
              input_shape=CIFAR, num_classes=10, reported="test 63.24%", reported_accuracy=0.6324,
              param_count=81_834, choices="dropout 0.2 after each max-pool as stated; " + _KERAS, built_count=81_834),
    _baseline("seed002-cnn-bn", {**_SEED002_CNN, "batchnorm": True, "bn_momentum": 0.01}, report="002 Q7",
              dataset="cifar10", input_shape=CIFAR, num_classes=10, reported="figure only (15 epochs)",
              reported_accuracy=None,
              choices="BatchNorm after each conv with Keras' default momentum 0.99 (PyTorch 0.01); " + _KERAS,
              built_count=82_050),
    _baseline("seed002-cnn-q9", {"blocks": 3, "convs_per_block": 1, "widths": [32, 64, 128], "kernel_size": 3,
                                 "padding": "same", "pool": "max", "pool_size": 2, "batchnorm": True,
                                 "bn_momentum": 0.25, "conv_dropout": 0.1, "head_widths": [256],
                                 "head_dropout": 0.5, "activation": "relu", **_KERAS_SGD},
              report="002 Q9", dataset="cifar10", input_shape=CIFAR, num_classes=10,
              reported="test 78.2% (≤25 epochs, 654,454 parameters)", reported_accuracy=0.782,
              choices="layers not fully given: 3 x (conv3x3 same, BN momentum 0.25, ReLU, max-pool, dropout 0.1) "
                      "with 32/64/128 filters, dense 256 + dropout 0.5: 620,586 parameters (report: 654,454); "
                      + _KERAS, built_count=620_586),
    _baseline("seed003-tutorial", {"blocks": 2, "convs_per_block": 1, "widths": [6, 16], "kernel_size": 5,
                                   "padding": "valid", "pool": "max", "pool_size": 2, "head_widths": [120, 84],
                                   "activation": "relu", **_TORCH_TUTORIAL_SGD, "batch_size": 4},
              report="003 Q3", dataset="cifar10", input_shape=CIFAR, num_classes=10, reported="59.27%",
              reported_accuracy=0.5927, param_count=62_006, choices=_TUTORIAL, built_count=62_006),
    _baseline("seed003-3block", _SEED003_3BLOCK, report="003 Q3", dataset="cifar10", input_shape=CIFAR,
              num_classes=10, reported="69.18%", reported_accuracy=0.6918, choices=_TUTORIAL, built_count=307_498),
    _baseline("seed003-tricks", {**_SEED003_3BLOCK, "batchnorm": True, "conv_dropout": 0.2, "augment": "flip",
                                 "lr": 0.1, "schedule": "cosine", "batch_size": 128},
              report="003 §6", dataset="cifar10", input_shape=CIFAR, num_classes=10,
              reported="79.86% → 80.11% (dropout) → higher with BN (50 epochs)", reported_accuracy=0.8011,
              choices="horizontal flips only (vertical flips and rotations are not in the space); lr 0.1 "
                      "cosine-decayed; dropout 0.2 after each block; BatchNorm; batch 128 (not stated)",
                      built_count=307_946),
    _baseline("seed004-fc", {"blocks": 0, "head_widths": [4096, 4096], **_SEED004}, report="004 P1",
              dataset="cifar100", input_shape=CIFAR, num_classes=100, reported="26% (20 epochs)",
              reported_accuracy=0.26, param_count=29_778_020,
              choices="lr 1e-4, batch 256 as stated; SGD momentum 0.9 (optimizer not stated)", built_count=29_778_020),
    _baseline("seed004-cnn", _SEED004_CNN, report="004 P2", dataset="cifar100", input_shape=CIFAR, num_classes=100,
              reported="29% (20 epochs)", reported_accuracy=0.29,
              choices="4 conv3x3 without padding (PyTorch's default), one max-pool after the last; SGD momentum 0.9",
              built_count=54_981_732),
    _baseline("seed004-cnn-wide", _SEED004_WIDE, report="004 P3a", dataset="cifar100", input_shape=CIFAR,
              num_classes=100, reported="33% (20 epochs)", reported_accuracy=0.33,
              choices="128/128/128/256 filters; otherwise as seed004-cnn", built_count=168_783_972),
    _baseline("seed004-cnn-bn", {**_SEED004_WIDE, "batchnorm": True, "bn_momentum": 0.1}, report="004 P4a",
              dataset="cifar100", input_shape=CIFAR, num_classes=100, reported="40% (20 epochs)",
              reported_accuracy=0.40, choices="BatchNorm after each conv (PyTorch default momentum)",
              built_count=168_784_612),
    _baseline("seed004-best", {**_SEED004_WIDE, "batchnorm": True, "bn_momentum": 0.1, "head_dropout": 0.8,
                               "head_dropout_at": "last", "augment": "flip", "optimizer": "adam", "lr": 1e-3},
              report="004 end", dataset="cifar100", input_shape=CIFAR, num_classes=100, reported="52%",
              reported_accuracy=0.52,
              choices="the wide net with BatchNorm, dropout 0.8 before the last fc, horizontal flips, Adam lr 1e-3",
              built_count=168_784_612),
    _baseline("seed000-catsdogs", _SEED000,
              report="000 exp 4", dataset="imagefolder", input_shape=(3, 180, 180), num_classes=2,
              reported="val 85.73% (exp 1), 83.85% (exp 4)", reported_accuracy=0.8573, reported_metric="val",
              param_count=26_308_673, choices=_KERAS_TUTORIAL, built_count=26_308_673),
    _baseline("seed000-dogs", {**_SEED000, "output": "softmax"}, report="000 exp 1", dataset="imagefolder",
              input_shape=(3, 180, 180), num_classes=120, reported="val 13.80% on Stanford Dogs (30 epochs)",
              reported_accuracy=0.138, reported_metric="val",
              choices="the cats-vs-dogs net with a softmax over the 120 breeds, as the report reused it; "
                      + _KERAS_TUTORIAL.removesuffix(", one sigmoid output"), built_count=26_369_720),
    _baseline("seed000-scratch", {**_SEED000, "pretrained": False}, report="000 exp 1",
              reported="val 85.73% (30 epochs; best 86.57%)", reported_accuracy=0.8573,
              choices="in a transfer study: the source model's architecture trained from scratch, the control for "
                      "the three transfers (the report's own net from scratch is seed000-catsdogs); "
                      + _KERAS_TUTORIAL, **_SEED000_TRANSFER, built_count=26_308_673),
    _baseline("seed000-reuse-all", {**_SEED000, "pretrained": True}, report="000 exp 2",
              reported="val 83.01% (50 epochs; best 83.75%)", reported_accuracy=0.8301,
              choices="every layer but the output starts from the source model and trains (the report also padded "
                      "its convs: here the architecture is the source model's); " + _KERAS_TUTORIAL,
              **_SEED000_TRANSFER, built_count=26_308_673),
    _baseline("seed000-reinit-2", {**_SEED000, "pretrained": True, "reinit_convs": 2}, report="000 exp 3",
              reported="val 67.78% (50 epochs; best 68.16%)", reported_accuracy=0.6778,
              choices="the first two conv layers re-initialised, the rest reused, all trained; " + _KERAS_TUTORIAL,
              **_SEED000_TRANSFER, built_count=26_308_673),
    _baseline("seed000-freeze-1", {**_SEED000, "pretrained": True, "freeze_convs": 1, "freeze_hidden": True},
              report="000 exp 4", reported="val 82.77% (50 epochs; best 83.85%)", reported_accuracy=0.8277,
              trainable_count=92_865,
              choices="the first conv layer frozen; the report's 92,865 trainable parameters (convs 2 and 3 and "
                      "the output layer) show its hidden fc 51200->512 was frozen too: freeze_hidden; "
                      + _KERAS_TUTORIAL, **_SEED000_TRANSFER, built_count=26_308_673),
)}
