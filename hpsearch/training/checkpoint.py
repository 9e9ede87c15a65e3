"""Per-epoch training checkpoints, so a trial whose worker died resumes where it stopped.

A checkpoint holds everything `train.fit` needs to continue bit for bit: model and optimizer
state, the weight average (ema), the data-order generator, the global RNGs (dropout draws from
them), and the epochs run; and, as its label, the recipe of the trial that wrote it.
It is written atomically after each epoch (a worker killed mid-write leaves the previous one)
and deleted once its trial has ended for good. All attempts of one trial (the original and
Optuna's retried copies) share one file, keyed by the first attempt's number.

A checkpoint only saves time: the trial's recipe is in the study, and training it from epoch 1 reaches what
the interrupted run would have. So a file that cannot be resumed from (damaged, truncated, pickled objects
rather than tensors, another trial's recipe, as left by a study of the same name made again, or tensors shaped
for another model) is named in a warning and the trial starts again from epoch 1, where failing it would lose
the trial to a file. A checkpoint that cannot be written (a full or read-only disk) is named in a warning once,
and the trial trains on: the previous checkpoint stays whole, so a retried copy resumes from an earlier epoch (or
the first).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from hpsearch.files import CannotWrite, check_writable, write_atomic
from hpsearch.storage import checkpoint_root, sqlite_file
from hpsearch.training import torchfile

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    epoch: int  # epochs finished
    model: dict[str, Any]
    optimizer: dict[str, Any]
    generator: torch.Tensor  # the data-order/augmentation generator's state
    cpu_rng: torch.Tensor
    cuda_rng: torch.Tensor | None
    history: list[dict[str, float]]  # EpochStats fields of every epoch so far
    average: dict[str, Any] | None = None  # the weight average's state dict, for a run with ema


class CheckpointFile:
    """One trial's checkpoint on disk. `recipe` labels what it saves (the trial's TrialRecord config as JSON):
    a file labelled with another is not resumed from; a file written before labels were is."""

    def __init__(self, path: Path, recipe: str | None = None):
        self.path = path
        self.recipe = recipe
        self.unwritable = False  # a save failed and said so: the later ones fail quietly

    def load(self, like: Checkpoint | None = None) -> Checkpoint | None:
        """The saved state, or None if there is none or none this trial can resume from (a warning says why).
        `like`: the live state it will be restored into, whose tensors its tensors must fit."""
        if not self.path.is_file():
            return None
        try:
            state = torchfile.load(self.path)
            problem = _format_problem(state) or self._recipe_problem(state.pop("recipe", None))
        except torchfile.UnreadableFile as exc:
            problem = exc.reason
        if problem is None:
            saved = Checkpoint(**state)
            problem = _misfit(saved, like) if like is not None else None
        if problem is not None:
            log.warning("cannot resume from the checkpoint %s (%s): the trial starts again from epoch 1", self.path,
                        problem)
            return None
        return saved

    def _recipe_problem(self, recipe: Any) -> str | None:
        if recipe is None or self.recipe is None or recipe == self.recipe:
            return None
        return "another trial's: its recipe differs from this trial's"

    def save(self, checkpoint: Checkpoint) -> None:
        """Write it whole in place of the previous one; a failure is a warning (see the module docstring)."""
        buffer = io.BytesIO()
        torch.save({**vars(checkpoint), "recipe": self.recipe}, buffer)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, buffer.getvalue())
        except (CannotWrite, OSError) as exc:
            if not self.unwritable:
                reason = exc.reason if isinstance(exc, CannotWrite) else exc.strerror
                log.warning("cannot write the checkpoint %s (%s): the trial trains on, and a retried copy would "
                            "resume from an older checkpoint or from epoch 1", self.path, reason)
            self.unwritable = True

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


def _format_problem(state: Any) -> str | None:
    """What makes `state` no checkpoint this module wrote, or None."""
    from hpsearch.training.train import EpochStats  # train imports this module

    names = {f.name for f in fields(Checkpoint)}
    required = {f.name for f in fields(Checkpoint) if f.name != "average"}
    if not isinstance(state, dict) or not required <= state.keys() <= names | {"recipe"}:
        return "not a checkpoint hpsearch wrote"
    epoch, history = state["epoch"], state["history"]
    stats = {f.name for f in fields(EpochStats)}
    if not (isinstance(epoch, int) and epoch >= 1 and isinstance(history, list) and len(history) == epoch
            and all(isinstance(h, dict) and h.keys() == stats for h in history)):
        return "its epochs and history do not agree"
    if not all(isinstance(state[key], torch.Tensor) for key in ("generator", "cpu_rng")):
        return "its random states are not tensors"
    if not all(isinstance(state.get(key) or {}, dict) for key in ("model", "optimizer", "average")):
        return "its weights are not state dicts"
    return None


def _misfit(saved: Checkpoint, live: Checkpoint) -> str | None:
    """How `saved` does not fit the live model, optimizer, generator and average, or None: checked before any of
    them is restored, so a misfit leaves all of them as they were."""
    if (saved.average is None) != (live.average is None):
        return "it holds no weight average, but this run averages the weights (ema)" if saved.average is None \
            else "it holds a weight average, but this run averages no weights"
    for name, ours, theirs in (("model", live.model, saved.model), ("weight average", live.average, saved.average)):
        if theirs is not None and (problem := _tensors_misfit(ours, theirs)):
            return f"its {name} {problem}"
    if saved.generator.shape != live.generator.shape or saved.cpu_rng.shape != live.cpu_rng.shape:
        return "its random states are another device's"
    if _group_sizes(saved.optimizer) != _group_sizes(live.optimizer):
        return "its optimizer holds other parameters"
    return None


def _group_sizes(optimizer: Mapping[str, Any]) -> list[int] | None:
    groups = optimizer.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                                for g in groups):
        return None
    return [len(g["params"]) for g in groups]


def _tensors_misfit(live: Mapping[str, torch.Tensor], saved: Mapping[str, Any]) -> str | None:
    if saved.keys() != live.keys():
        return "has other layers"
    wrong = next((k for k, v in saved.items() if not isinstance(v, torch.Tensor) or v.shape != live[k].shape), None)
    if wrong is not None:
        shape = tuple(saved[wrong].shape) if isinstance(saved[wrong], torch.Tensor) else type(saved[wrong]).__name__
        return f"has {wrong} of shape {shape}, the model's is {tuple(live[wrong].shape)}"
    return None


def writable_checkpoint_root(storage_url: str) -> Path:
    """checkpoint_root, refused now (HpsearchError) if it is full or read-only rather than after a trial's first
    epoch."""
    folder = checkpoint_root(storage_url)
    elsewhere = "choose another storage" if sqlite_file(storage_url) else "set $HPSEARCH_CHECKPOINTS to another folder"
    check_writable(folder, "the checkpoint folder", elsewhere)
    return folder
