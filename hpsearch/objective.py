"""One trial: sample a config, build the model, fit it reporting every epoch, prune, record.

Only expected failures are caught: a NaN/inf loss, CUDA out-of-memory, and an architecture that
does not fit the input. Each ends the trial as FAILED with its reason in the `failure` user
attribute, and the study goes on. Anything else is a bug and stops the run.
"""

from __future__ import annotations

import gc
import os
import platform
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from hpsearch import space, transfer
from hpsearch.baselines import BASELINES
from hpsearch.checkpoint import CheckpointFile
from hpsearch.data_init import init_from_data
from hpsearch.data import DeviceData
from hpsearch.errors import hold_signals, interruption
from hpsearch.models import ArchitectureError, build_model, count_parameters
from hpsearch.paths import slug
from hpsearch.spectypes import StudySpec
from hpsearch.train import EpochStats, TrainingDiverged, evaluate, fit, prepare


class TrialFailed(Exception):
    """An expected failure, recorded on the trial; the study continues."""


class RunEvents:
    """What a display may want to hear about while a study runs. The defaults ignore it all."""

    def loading(self, what: str, done: int, total: int) -> None: ...  # e.g. decoding an image folder

    def study_opened(self, study: optuna.Study, data: DeviceData) -> None: ...

    def trial_started(self, number: int, params: dict[str, Any]) -> None: ...

    def epoch_finished(self, number: int, stats: EpochStats) -> None: ...


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def make_objective(spec: StudySpec, data: DeviceData, events: RunEvents | None = None, *,
                   checkpoints: Path | None = None,
                   on_complete: Callable[[optuna.Trial, torch.nn.Module], None] | None = None,
                   source: transfer.Source | None = None):
    """The Optuna objective for `spec` on already loaded `data`: validation accuracy, maximised.

    With `checkpoints` (a folder), each trial saves its training state after every epoch there,
    and a retried copy of a trial whose worker died resumes from it instead of from epoch 1.
    on_complete(trial, model) runs after a trial trained to the end, while the trial can still
    take attributes and artifacts (artifacts.WeightKeeper keeps the best trials' weights).
    source: the trained model a study with init: starts from; its config, where it has one, is
    every trial's architecture.
    """
    events = events or RunEvents()
    device = data.train_x.device
    architecture = source.config if source is not None else None
    provenance = {"device": device_name(device), "torch": torch.__version__, "optuna": optuna.__version__,
                  "dataset_source": data.source, "worker": f"{socket.gethostname()}:{os.getpid()}",
                  "input_shape": list(data.shape)}
    if source is not None:
        provenance["init"] = source.origin

    def objective(trial: optuna.Trial) -> float:
        baseline = trial.user_attrs.get("baseline")  # set when study.queue_next_baseline queued it
        params = BASELINES[baseline].config(architecture) if baseline else space.sample(trial, spec, architecture)
        trial.set_user_attr("config", params)
        for key, value in provenance.items():
            trial.set_user_attr(key, value)
        events.trial_started(trial.number, params)
        started = time.perf_counter()
        epochs_run = 0
        checkpoint = _checkpoint_file(checkpoints, trial) if checkpoints else None

        def on_epoch(stats: EpochStats) -> None:
            nonlocal epochs_run
            if epochs_run == 0 and stats.epoch > 1:  # fit resumed a checkpoint of an earlier attempt
                trial.set_user_attr("resumed_from_epoch", stats.epoch - 1)
                _report_restored(trial, checkpoint, before=stats.epoch)
            epochs_run = stats.epoch
            trial.report(stats.val_accuracy, stats.epoch)
            events.epoch_finished(trial.number, stats)
            if not baseline and trial.should_prune():  # a baseline always runs its full budget
                raise optuna.TrialPruned(f"pruned after epoch {stats.epoch} (val {stats.val_accuracy:.4f})")

        try:
            model_cfg = space.model_config(params, data.shape, data.num_classes)
            torch.manual_seed(spec.seed)
            model = build_model(model_cfg)
            init_from_data(model, data)
            reused = transfer.apply(model, source, params, data.shape) if params.get("pretrained") else ()
            model = prepare(model, device)
            trial.set_user_attr("param_count", count_parameters(model))
            trial.set_user_attr("trainable_count", sum(p.numel() for p in model.parameters() if p.requires_grad))
            train_cfg = space.train_config(params, epochs=spec.budget.epochs, seed=spec.seed)
            history = fit(model, data, train_cfg, on_epoch, checkpoint=checkpoint, reused=reused)
            trial.set_user_attr("val_accuracy", history[-1].val_accuracy)
            trial.set_user_attr("test_accuracy", evaluate(model, data, data.test_x, data.test_y, tta=train_cfg.tta))
            if on_complete is not None:
                on_complete(trial, model)
            return history[-1].val_accuracy
        except (ArchitectureError, TrainingDiverged) as exc:
            failure = str(exc)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as errors.Terminated
            hold_signals()
            trial.set_user_attr("failure", f"{interruption(exc)}; run the same command again to resume")
            checkpoint = None  # kept for the resumed copy
            raise  # Optuna records the trial as FAIL, never RUNNING, and the CLI exits 130 (143 for SIGTERM)
        except torch.OutOfMemoryError:
            failure = f"CUDA out of memory (batch_size {params['batch_size']}); memory freed, the study goes on"
        finally:
            if checkpoint is not None:
                checkpoint.delete()
            trial.set_user_attr("epochs", epochs_run)
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
        # Out of the except blocks, nothing refers to the failed step's tensors any more.
        model = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        trial.set_user_attr("failure", failure)
        raise TrialFailed(failure)

    return objective


def _report_restored(trial: optuna.Trial, checkpoint: CheckpointFile, *, before: int) -> None:
    """Report the restored epochs (those before `before`) again: the last one's report is missing if the
    earlier attempt's worker died between saving its checkpoint and reporting it. Optuna keeps the
    first report of a step."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the reported value is ignored because this step is already reported"
        for past in checkpoint.load().history:
            if past["epoch"] < before:
                trial.report(past["val_accuracy"], past["epoch"])


def _checkpoint_file(folder: Path, trial: optuna.Trial) -> CheckpointFile:
    """Every attempt of a trial shares the first attempt's checkpoint (Optuna records the chain)."""
    first = trial.study.get_trials(deepcopy=False)[trial.number].system_attrs.get("retry_history", [trial.number])[0]
    return CheckpointFile(folder / slug(trial.study.study_name) / f"trial-{first}.pt")
