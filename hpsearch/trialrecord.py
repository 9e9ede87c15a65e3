"""A trial as one typed value, and the names of everything a trial stores.

A TrialRecord holds what rebuilds and retrains a trial's model: every parameter, the dataset and
its split, epochs, the training seed, where the weights start, and the input the model was built
for. It has three written forms, each read back losslessly: the stored trial (Optuna user
attributes, with the study's split and seed), the exported config (export.py's file), and the
header of every weights file hpsearch writes. Standard library only: no torch or optuna to load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A trial's user attributes: the only place their names are spelled.
CONFIG = "config"  # every parameter the trial trained with
BASELINE = "baseline"  # the baseline's name, on a trial queued as one
FAILURE = "failure"  # why a trial failed
EPOCHS = "epochs"  # epochs trained
SECONDS = "seconds"  # wall time of the trial
TRAIN_SECONDS = "train_seconds"  # training time, the sum of its epochs
VAL_ACCURACY = "val_accuracy"
TEST_ACCURACY = "test_accuracy"
PARAM_COUNT = "param_count"
TRAINABLE_COUNT = "trainable_count"  # parameters left to train after freezing
RUN = "run"  # the run (one `hpsearch run` and its workers) that ran the trial
OVER_LIMIT = "over_limit"  # why a trial was stopped over one of the study's limits
STOPPED = "stopped"  # why hpsearch stopped a trial early: hopeless, or past the time its run has left
COST = "cost"  # what the trial was projected and measured to cost (search/cost.py)
WARM_START = "warm_start"  # on a trial copied from another study: where from (never counted here)
LIMITS = "limits"  # the measures the study's limits constrain
WEIGHTS = "weights_artifact"  # the artifact id of its kept weights
WEIGHTS_NOT_KEPT = "weights_not_kept"  # why a completed trial that earned a place among the kept has no weights
INPUT_SHAPE = "input_shape"  # (C, H, W) the model was built for
CLASSES = "classes"  # the number of classes it was built for
INIT = "init"  # where its weights started, in words (messages and the dashboard)
SOURCE = "source"  # where its weights started, as Init.as_dict() writes it
CODE = "code"  # the user code that built its model and read its data: training/usercode.code_record
RESUMED_FROM_EPOCH = "resumed_from_epoch"
DEVICE = "device"
DATASET_SOURCE = "dataset_source"
WORKER = "worker"
SLURM = "slurm"  # the SLURM job that ran it: SLURM's job_id, array_job_id, array_task_id and restart_count
TORCH = "torch"
OPTUNA = "optuna"

CONFIRM = "confirm"  # on a trial from ranking.study_trials: its retraining with new seeds (confirm.py)
PRUNER_ATTRS = "pruner_attrs"  # curvepruning's per-trial state
CURVE = "val_curve"  # a two-objective trial's validation accuracy by epoch (curvepruning)

# The study's user attributes; split and seed are every trial's record's.
STUDY_SPLIT = "dataset_split"
STUDY_SEED = "seed"
STUDY_DATASET = "dataset"  # the dataset's name
STUDY_EPOCHS = "epochs"
STUDY_SPEC_PATH = "spec_path"  # the study file it was made from
STUDY_LIMITS = "limits"  # the limits the last run held
STUDY_MADE_WITH = "made_with"  # what decides its trials' results: epochs, data, each parameter's distribution
STUDY_CHANGES = "accepted_changes"  # each change of those a run was told to accept (run --accept-change)
STUDY_STOP_RULES = "stop_rules"  # what ended its runs early, from which trial on: results/trials.py stop_rules_with
STUDY_STOP = "stop_request"  # `hpsearch stop`: who asked, when, which runs it stops, whether queued copies go too
STUDY_ATTRS = (STUDY_SPLIT, STUDY_SEED, STUDY_DATASET, STUDY_EPOCHS, STUDY_SPEC_PATH, STUDY_LIMITS,
               STUDY_MADE_WITH, STUDY_CHANGES, STUDY_STOP_RULES, STUDY_STOP)  # any: hpsearch's
# The study's system attributes (hpsearch's bookkeeping, which the dashboard does not list).
RUN_RECORD = "hpsearch:run "  # + a run's id: what the run was told (its goal, stop rules, heartbeat; its SLURM job)

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
        """The trial's own user attributes (split and seed are the study's: study_attrs)."""
        attrs: dict[str, Any] = {CONFIG: dict(self.params), EPOCHS: self.epochs}
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

    def study_attrs(self) -> dict[str, Any]:
        return {STUDY_SPLIT: dict(self.dataset), STUDY_SEED: self.seed}

    @classmethod
    def from_attrs(cls, trial_attrs: Mapping[str, Any], study_attrs: Mapping[str, Any], *,
                   storage: str | None = None) -> TrialRecord:
        """The record of a stored trial; `storage` is its study's, where a transfer trial that
        predates the `source` attribute found its source study (its `init` words name study and trial)."""
        init = None
        if SOURCE in trial_attrs:
            init = Init.from_dict(trial_attrs[SOURCE])
        elif INIT in trial_attrs:
            words = _ORIGIN.fullmatch(trial_attrs[INIT])
            init = (Init(study=words["study"], trial=int(words["trial"]), storage=storage) if words
                    else Init(weights=trial_attrs[INIT]))
        shape = trial_attrs.get(INPUT_SHAPE)
        return cls(params=trial_attrs[CONFIG], dataset=study_attrs[STUDY_SPLIT], epochs=trial_attrs[EPOCHS],
                   seed=study_attrs[STUDY_SEED], init=init, input_shape=tuple(shape) if shape else None,
                   classes=trial_attrs.get(CLASSES), code=trial_attrs.get(CODE))

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
