"""The study-file types every layer shares, and the table of datasets a study file is checked against.

A leaf: it imports nothing outside the standard library, so that reading a study file, listing
the shipped studies or printing `--help` never loads torch or Optuna (seconds) for these types.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hpsearch.words import plural


@dataclass(frozen=True)
class Dataset:
    """A dataset a study can name, and what a model sees of it, known without reading it (the study-file
    checks build models on it). Its reader is hpsearch.training.datasets.READERS[name], a table with the
    same keys as this one: that one imports torch, this one nothing."""

    name: str
    input_shape: tuple[int, int, int] | None  # (C, H, W); None: (3, *dataset.image_size), or known once read
    classes: int | None  # None: known once it is read
    # Read by code outside hpsearch: the import path of its function, load(options, data_dir) -> the images
    # (training/datasets.py calls it); None: hpsearch's own (READERS). A plugin's row, or a study's own.
    builder: str | None = None


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("digits", (1, 8, 8), 10),
    Dataset("fashion-mnist", (1, 28, 28), 10),
    Dataset("cifar10", (3, 32, 32), 10),
    Dataset("cifar100", (3, 32, 32), 100),
    Dataset("imagefolder", None, None),  # any <class>/<image> tree, each image resized to dataset.image_size
)}

RESIZE_POLICIES = ("squash", "crop", "pad")  # to image_size: ignore the aspect ratio, centre-crop, or letterbox


@dataclass(frozen=True)
class Distribution:
    """How one parameter is searched: an int or float range, or a choice among values."""

    kind: str  # "int", "float" or "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()


@dataclass(frozen=True)
class Conditional:
    """A parameter searched over a distribution chosen by an earlier choice, `by`: one branch per value of it
    (lr by optimizer: Adam's learning rates are not SGD's). Each branch is a parameter of its own to the
    sampler, named by branch_name, so that it learns each range from the trials that drew it."""

    by: str
    branches: tuple[tuple[Any, Distribution], ...]  # (value of `by`, distribution), in the study file's order

    def branch(self, name: str, value: Any) -> tuple[str, Distribution]:
        """The sampler's name for `name` where `by` is `value`, and its distribution there."""
        return branch_name(name, self.by, value), dict(self.branches)[value]


def branch_name(name: str, by: str, value: Any) -> str:
    """'lr[optimizer=adam]', 'bn_momentum[batch_size=128]': a conditional parameter's name in one branch."""
    shown = value if isinstance(value, str) else json.dumps(value)
    return f"{name}[{by}={shown}]"


@dataclass(frozen=True)
class WarmStart:
    """Another study whose finished trials, where they lie in this study's space, a new study starts with."""

    study: str
    storage: str | None = None  # its storage URL; None: the run's own


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    validation: float = 0.1  # a fraction of the training set, or a count if >= 1
    test: float = 0.2  # only for datasets without an official test split (digits)
    split_seed: int = 0
    data_dir: str | None = None
    download: bool = True
    path: str | None = None  # imagefolder: the folder, relative to the data folder or absolute
    image_size: tuple[int, int] | None = None  # imagefolder: (H, W) every image is resized to
    resize: str = "squash"  # imagefolder: how (RESIZE_POLICIES)
    options: Mapping[str, Any] | None = None  # a data builder's: what it is called with

    def recorded(self) -> dict:
        """What fixes the images and their split, as a study records it and an exported config carries it:
        an image folder's path, size and resize policy too, a data builder's options, and where a builder gives
        an image folder, its size and policy; never data_dir or download, the machine's."""
        split = {"name": self.name, "validation": self.validation, "test": self.test, "split_seed": self.split_seed}
        if self.name == "imagefolder":
            return {**split, "path": self.path, "image_size": list(self.image_size), "resize": self.resize}
        if self.options is not None:
            split["options"] = dict(self.options)
        if self.image_size is not None:
            split |= {"image_size": list(self.image_size), "resize": self.resize}
        return split


@dataclass(frozen=True)
class InitSpec:
    """The trained model a study starts from: a trial of another study, or a weights file."""

    study: str | None = None
    trial: int | str = "best"
    storage: str | None = None  # the other study's storage; None: the run's own
    weights: str | None = None  # a path, made absolute against the study file's folder


@dataclass(frozen=True)
class Budget:
    epochs: int
    trials: int = 20
    timeout: float | None = None


@dataclass(frozen=True)
class Target:
    """The accuracy that ends the search, judged on `metric` of each completed sampled trial. A test_accuracy
    target lets the test set decide when the search stops, biasing the test accuracy reported at the stop
    upward: the study file must then say why (`test_set_stops_the_search`)."""

    metric: str  # val_accuracy, or test_accuracy with `why`
    value: float
    why: str | None = None  # test_set_stops_the_search: the reason a test target was accepted


@dataclass(frozen=True)
class Limits:
    """Bounds a trial must respect to count: over one, it is never the best and never reaches the target."""

    params: int | None = None  # parameter count, known when the model is built
    train_seconds: float | None = None  # wall seconds of training, evaluation included


@dataclass(frozen=True)
class Component:
    """A sampler or pruner: its name in the table and the options for its Optuna class."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudySpec:
    name: str
    path: str
    about: str
    dataset: DatasetSpec
    budget: Budget
    target: Target | None
    sampler: Component
    pruner: Component
    space: Mapping[str, Distribution | Conditional]
    fixed: Mapping[str, Any]
    seed: int = 0
    baselines: tuple[str, ...] = ()
    init: InitSpec | None = None
    limits: Limits = field(default_factory=Limits)
    objectives: tuple[str, ...] = ("val_accuracy",)  # more than one: a multi-objective study (a Pareto front)
    warm_start: WarmStart | None = None

    def describe_epochs(self) -> str:
        """'12 epochs a trial'; with `epochs` searched or fixed, what a sampled trial trains, and the baselines'
        budget beside it: 'up to 12 epochs a trial (baselines 25)'."""
        if "epochs" in self.fixed:
            said = f"{plural(self.fixed['epochs'], 'epoch')} a trial"
        elif "epochs" in self.space:
            dist = self.space["epochs"]
            said = f"up to {plural(max(dist.choices) if dist.kind == 'choice' else int(dist.high), 'epoch')} a trial"
        else:
            return f"{plural(self.budget.epochs, 'epoch')} a trial"
        return said + (f" (baselines {self.budget.epochs})" if self.baselines else "")

    def describe_target(self) -> str:
        if self.target is None:
            return "none"
        return f"{self.target.metric} >= {self.target.value:.2%}"
