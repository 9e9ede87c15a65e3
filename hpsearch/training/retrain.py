"""An exported config trained again (`hpsearch train`): the recipe run with a chosen seed, the
weights and results written beside the config, and what differs from the trial's own run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from hpsearch.errors import HpsearchError
from hpsearch.files import copy_atomic
from hpsearch.results.artifacts import save_state_dict
from hpsearch.results.export import TrialConfig
from hpsearch.results.stats import spread
from hpsearch.training import devicedata as data_module
from hpsearch.training import recipe, transfer
from hpsearch.training.models import ArchitectureError
from hpsearch.training.train import Batches, EpochStats, TrainingDiverged
from hpsearch.record import SeedResult, TrialRecord


def differences(config: TrialConfig, device: torch.device) -> list[str]:
    """What differs from the trial's own run, so that close-but-not-identical numbers are expected."""
    notes = []
    trained_on = str(config.metrics.get("device") or "")
    if trained_on and trained_on.startswith("cpu") != (device.type == "cpu"):
        notes.append(f"the trial trained on {trained_on}, this runs on {device}: expect close, not identical, numbers")
    if config.versions.get("torch") not in (None, torch.__version__):
        notes.append(f"the trial trained with torch {config.versions['torch']}, this is torch {torch.__version__}: "
                     "the last digits may differ")
    return notes


@dataclass(frozen=True)
class Retrained:
    record: TrialRecord  # the config's, with this run's seed and the data's shape and classes
    model: torch.nn.Module
    history: list[EpochStats]
    val_accuracy: float
    test_accuracy: float

    @property
    def seed(self) -> int:
        return self.record.seed


def retrain(config: TrialConfig, seed: int, device: torch.device, *, data_dir: Path | None = None,
            storage: str | None = None, on_epoch: Callable[[EpochStats], None] | None = None,
            on_batches: Callable[[Batches], None] | None = None,
            progress: data_module.Progress = None) -> Retrained:
    """Train the config's model with `seed` through recipe.train, as objective.py trains a trial:
    a transfer trial starts from the same source weights (its study's stored ones, or the file). `storage`: this
    command's storage URL, which gives the source's storage its password (transfer.source_url)."""
    record = config.record
    source = None
    if record.init is not None and record.params.get("pretrained"):  # before the data: a missing source fails fast
        source = transfer.load_source(record.init, storage)
    data = data_module.load(config.dataset, device, data_dir, progress=progress)
    try:
        trained = recipe.train(dict(record.params), data, epochs=record.epochs, seed=seed, source=source,
                               on_epoch=on_epoch, on_batches=on_batches)
    except (TrainingDiverged, ArchitectureError) as exc:
        raise HpsearchError(f"seed {seed}: {exc}") from None
    record = replace(record, seed=seed, input_shape=data.shape, classes=data.num_classes)
    return Retrained(record, trained.model, trained.history, trained.val_accuracy, trained.test_accuracy)


def start_out_dir(out: Path, config_path: Path) -> None:
    """Put an exact copy of the config in the folder `out` (files.output_folder made it), so the weights never
    lose their recipe."""
    copy = out / f"config{config_path.suffix}"
    if not copy.exists() or not copy.samefile(config_path):
        copy_atomic(config_path, copy)


def save_retrained(run: Retrained, out: Path, config_path: Path) -> Path:
    """The run's weights as out/seed-S.safetensors; the header names the config and the accuracies."""
    path = out / f"seed-{run.seed}.safetensors"
    save_state_dict(run.model, path, {"config": config_path.name, "seed": str(run.seed),
                                      "val_accuracy": repr(run.val_accuracy), "test_accuracy": repr(run.test_accuracy),
                                      **run.record.header()})
    return path


def seed_result(run: Retrained) -> SeedResult:
    """What one seed reached, as results.json and a trial's confirmation store it."""
    return SeedResult(run.seed, run.val_accuracy, run.test_accuracy, round(sum(s.seconds for s in run.history), 3))


def results(runs: list[Retrained], device: torch.device) -> dict[str, Any]:
    """Per-seed accuracies and the test accuracy's mean and sample standard deviation."""
    test = spread([r.test_accuracy for r in runs])
    return {"seeds": [seed_result(r).as_dict() for r in runs],
            "test_accuracy_mean": test["mean"], "test_accuracy_std": test["std"] or 0.0,
            "device": str(device), "torch": torch.__version__, "hpsearch": version("hpsearch")}
