"""Per-epoch training checkpoints, so a trial whose worker died resumes where it stopped.

A checkpoint holds everything `train.fit` needs to continue bit for bit: model and optimizer
state, the weight average (ema), the data-order generator, the global RNGs (dropout draws from
them), and the epochs run.
It is written atomically after each epoch (a worker killed mid-write leaves the previous one)
and deleted once its trial has ended for good. All attempts of one trial (the original and
Optuna's retried copies) share one file, keyed by the first attempt's number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpsearch.storage import folder_beside


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
    """One trial's checkpoint on disk."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> Checkpoint | None:
        if not self.path.is_file():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        return Checkpoint(**state)

    def save(self, checkpoint: Checkpoint) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(f".{os.getpid()}.partial")
        torch.save(vars(checkpoint), partial)
        partial.replace(self.path)  # atomic: a reader sees the old file or the new one

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


def checkpoint_root(storage_url: str) -> Path:
    """In the storage's side folder (x.db -> x-files/checkpoints/); for a server storage $HPSEARCH_CHECKPOINTS,
    else ./hpsearch-files/checkpoints.

    With PostgreSQL and several machines, a retried trial resumes only where its checkpoint is
    visible (a shared folder in $HPSEARCH_CHECKPOINTS); elsewhere it starts again from epoch 1.
    """
    return folder_beside(storage_url, "checkpoints", "HPSEARCH_CHECKPOINTS")
