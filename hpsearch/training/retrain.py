"""An exported config trained again (`hpsearch train`): the recipe run with a chosen seed, the
weights and results written beside the config, and what differs from the trial's own run; and a trained
model read back from the weights file hpsearch wrote for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from hpsearch.errors import HpsearchError
from hpsearch.files import copy_atomic, output_folder, write_atomic
from hpsearch.results.artifacts import load_state_dict_file, save_state_dict
from hpsearch.results.export import TrialConfig, read_config, weights_record
from hpsearch.results.stats import spread
from hpsearch.studyfile import params as P
from hpsearch.training import devicedata as data_module
from hpsearch.training import recipe, transfer, usercode
from hpsearch.training.models import ArchitectureError, build_model
from hpsearch.training.space import model_config
from hpsearch.training.train import Batches, EpochStats, TrainingDiverged
from hpsearch.record import SeedResult, TrialRecord


def differences(config: TrialConfig, device: torch.device) -> list[str]:
    """What differs from the trial's own run, so that close-but-not-identical numbers are expected: the device,
    torch, and the source of a builder of the user's that made the model or read the data (this imports it)."""
    notes = usercode.code_changes(config.record.code or {})
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
    command's storage URL, which gives the source's storage its password (results/sources.source_url)."""
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
    record = replace(record, seed=seed, input_shape=data.shape, classes=data.num_classes,
                     code=usercode.code_record(P.complete(record.params)["family"], config.dataset.name) or None)
    return Retrained(record, trained.model, trained.history, trained.val_accuracy, trained.test_accuracy)


class RetrainEvents:
    """What `train_seeds` reports as it goes; each method does nothing unless a subclass shows it
    (search/progress.py's RetrainDisplay)."""

    def loading(self, what: str, done: int, total: int) -> None: ...  # e.g. decoding an image folder

    def seed_started(self, seed: int) -> None: ...

    def batches_done(self, done: Batches) -> None: ...  # within an epoch, every few seconds

    def epoch_finished(self, stats: EpochStats) -> None: ...

    def seed_finished(self) -> None: ...


@dataclass(frozen=True)
class TrainPlan:
    """What `train_seeds` is about to do, for its display to show first."""

    config: TrialConfig
    seeds: tuple[int, ...]  # the config's seed, then one more each
    device: torch.device
    out: Path
    notes: tuple[str, ...]  # what differs from the trial's own run (differences)


@dataclass(frozen=True)
class TrainedSeeds:
    out: Path  # the folder: the config's copy, seed-S.safetensors each, results.json
    runs: tuple[Retrained, ...]
    results: dict[str, Any]  # results.json


Progress = Callable[[TrainPlan], AbstractContextManager[RetrainEvents | None]]


def train_seeds(config_path: Path, seeds: int, device: str, *, out: Path | None = None, data_dir: Path | None = None,
                progress: Progress | None = None,
                on_seed: Callable[[Retrained, TrialConfig], None] | None = None) -> TrainedSeeds:
    """`hpsearch train`: the exported config at `config_path` trained with `seeds` seeds (its own, then one more
    each), each seed's weights saved in `out` as it finishes (then given to on_seed with the config), then
    results.json. `out` defaults to the config's name without its suffix, plus -trained; a folder this made is
    removed again if the first seed fails."""
    config = read_config(config_path)
    torch_device = data_module.resolve_device(device)
    out = out or config_path.with_name(config_path.stem + "-trained")
    plan = TrainPlan(config, tuple(range(config.record.seed, config.record.seed + seeds)), torch_device, out,
                     tuple(differences(config, torch_device)))
    runs = []
    with output_folder(out, "--out", kept_if=lambda folder: any(folder.glob("seed-*"))):
        start_out_dir(out, config_path)
        with progress(plan) if progress else nullcontext() as shown:
            events = shown or RetrainEvents()
            for seed in plan.seeds:
                events.seed_started(seed)
                retrained = retrain(config, seed, torch_device, data_dir=data_dir, on_epoch=events.epoch_finished,
                                    on_batches=events.batches_done, progress=events.loading)
                save_retrained(retrained, out, config_path)
                events.seed_finished()
                runs.append(retrained)
                if on_seed:
                    on_seed(retrained, config)
        summary = results(runs, torch_device)
        write_atomic(out / "results.json", json.dumps(summary, indent=2) + "\n")
    return TrainedSeeds(out, tuple(runs), summary)


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


def load_trained(path: Path) -> torch.nn.Module:
    """The trained model in a weights file hpsearch wrote (a trial's stored weights, an export's copy, a seed of
    `hpsearch train`), rebuilt from the record in its header, on the CPU and in eval mode."""
    record = weights_record(path)
    if record is None or record.input_shape is None or record.classes is None:
        raise HpsearchError(f"{path} does not record the model it holds (written by an earlier hpsearch): export its "
                            "trial and train it again (`hpsearch train --config FILE`) for weights that do")
    model = build_model(model_config(record.params, record.input_shape, record.classes))
    try:
        model.load_state_dict(load_state_dict_file(path))
    except RuntimeError as exc:  # the tensors are not those of the recorded model
        raise HpsearchError(f"{path}: its weights do not fit the model its header records "
                            f"({str(exc).splitlines()[0]})") from None
    return model.eval()


def seed_result(run: Retrained) -> SeedResult:
    """What one seed reached, as results.json and a trial's confirmation store it."""
    return SeedResult(run.seed, run.val_accuracy, run.test_accuracy, round(sum(s.seconds for s in run.history), 3))


def results(runs: list[Retrained], device: torch.device) -> dict[str, Any]:
    """Per-seed accuracies and the test accuracy's mean and sample standard deviation."""
    test = spread([r.test_accuracy for r in runs])
    return {"seeds": [seed_result(r).as_dict() for r in runs],
            "test_accuracy_mean": test["mean"], "test_accuracy_std": test["std"] or 0.0,
            "device": str(device), "torch": torch.__version__, "hpsearch": version("hpsearch")}
