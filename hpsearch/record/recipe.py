"""A trial's recipe as one typed value: what rebuilds and retrains its model.

A TrialRecord holds every parameter, the dataset and its split, epochs, the training seed, where the
weights start, and the input the model was built for. It has three written forms, each read back
losslessly: the stored trial (Optuna user attributes, with the study's split and seed), the exported
config (export.py's file), and the header of every weights file hpsearch writes. Standard library
only: no torch or optuna to load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpsearch.record.keys import CLASSES, CODE, CONFIG, EPOCHS_TRAINED, INIT, INPUT_SHAPE, SOURCE

_ORIGIN = re.compile(r"study (?P<study>.+) trial #(?P<trial>\d+)")  # Init.origin's words for a study's trial


@dataclass(frozen=True)
class Init:
    """Where a trial's weights started: a trial of a study (in `storage`), or a weights file and its sha256.

    A record is stored, exported and written into weights headers, so its storage is kept masked (storage.mask),
    a password read from an earlier version's record too: transfer.load_source takes the password from a URL
    the user gave, never from a record.
    """

    study: str | None = None
    trial: int | None = None
    storage: str | None = None
    weights: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.storage is not None:
            from hpsearch.storage import mask  # loads Optuna: only for a record that names a storage

            object.__setattr__(self, "storage", mask(self.storage))

    @property
    def origin(self) -> str:
        return f"study {self.study} trial #{self.trial}" if self.study is not None else str(self.weights)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Init:
        return cls(**raw)


@dataclass(frozen=True)
class TrialRecord:
    """What trains a trial's model again. Weights start from scratch where `init` is None (then
    `params['pretrained']` is false); reinit_convs, freeze_convs and freeze_hidden are in `params`."""

    params: Mapping[str, Any]
    dataset: Mapping[str, Any]  # DatasetSpec.recorded()
    epochs: int
    seed: int
    init: Init | None = None
    input_shape: tuple[int, int, int] | None = None  # None: recorded by no hpsearch before this one
    classes: int | None = None
    code: Mapping[str, Mapping[str, str]] | None = None  # {"model": {"builder": PATH, "sha256": HEX}, "data": ...}

    # The stored trial -------------------------------------------------------------------------

    def trial_attrs(self) -> dict[str, Any]:
        """What a trial stores of its recipe as it starts (trial.started): its parameters, the input its model was
        built for, and where its weights start. Split and seed are its study's; its epochs are its `epochs` parameter,
        else those it trains (from_attrs)."""
        attrs: dict[str, Any] = {CONFIG: dict(self.params)}
        if self.input_shape is not None:
            attrs[INPUT_SHAPE] = list(self.input_shape)
        if self.classes is not None:
            attrs[CLASSES] = self.classes
        if self.init is not None:
            attrs[INIT] = self.init.origin
            attrs[SOURCE] = self.init.as_dict()
        if self.code:
            attrs[CODE] = dict(self.code)
        return attrs

    @classmethod
    def from_attrs(cls, trial_attrs: Mapping[str, Any], *, split: Mapping[str, Any], seed: int,
                   storage: str | None = None) -> TrialRecord:
        """The record of a completed stored trial, with its study's split and seed.

        Its epochs: its own `epochs` parameter where searched or fixed, else the epochs it trained, which for a
        completed trial are all of them (a study stored before epochs could be searched records nothing else).
        `storage` is its study's, where a transfer trial that predates the `source` attribute found its source
        study (its `init` words name study and trial).
        """
        init = None
        if SOURCE in trial_attrs:
            init = Init.from_dict(trial_attrs[SOURCE])
        elif INIT in trial_attrs:
            words = _ORIGIN.fullmatch(trial_attrs[INIT])
            init = (Init(study=words["study"], trial=int(words["trial"]), storage=storage) if words
                    else Init(weights=trial_attrs[INIT]))
        params, shape = trial_attrs[CONFIG], trial_attrs.get(INPUT_SHAPE)
        return cls(params=params, dataset=split, epochs=params.get("epochs") or trial_attrs[EPOCHS_TRAINED],
                   seed=seed, init=init, input_shape=tuple(shape) if shape else None, classes=trial_attrs.get(CLASSES),
                   code=trial_attrs.get(CODE))

    # The exported config ----------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The recipe keys of an exported config (export.py adds what the trial reached)."""
        out: dict[str, Any] = {"dataset": dict(self.dataset), "epochs": self.epochs, "seed": self.seed,
                               "params": dict(self.params)}
        if self.init is not None:
            out["init"] = self.init.as_dict()
        if self.input_shape is not None:
            out["input_shape"] = list(self.input_shape)
        if self.classes is not None:
            out["classes"] = self.classes
        if self.code:
            out["code"] = dict(self.code)
        return out

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> TrialRecord:
        """An exported config's record; one written before `init`, `input_shape`, `classes` and `code` were has none."""
        shape = raw.get("input_shape")
        return cls(params=raw["params"], dataset=raw["dataset"], epochs=raw["epochs"], seed=raw["seed"],
                   init=Init.from_dict(raw["init"]) if raw.get("init") else None,
                   input_shape=tuple(shape) if shape else None, classes=raw.get("classes"), code=raw.get("code"))

    # A weights file's header ------------------------------------------------------------------

    def header(self) -> dict[str, str]:
        """Text metadata for a safetensors header: the record, and the parameters as before."""
        return {"record": json.dumps(self.config()), "params": json.dumps(dict(self.params))}

    @classmethod
    def from_header(cls, metadata: Mapping[str, str]) -> TrialRecord | None:
        """The record in a weights file's header, or None for a file written before headers carried one."""
        return cls.from_config(json.loads(metadata["record"])) if "record" in metadata else None
