"""One trial: sample a config, build the model, fit it reporting every epoch, prune, record.

Only expected failures are caught: a NaN/inf loss, CUDA out-of-memory, and an architecture that
does not fit the input. Each ends the trial as FAILED with its reason in the `failure` user
attribute, and the study goes on. Anything else is a bug and stops the run.

A trial over one of the study's limits ends as PRUNED with its reason in the `over_limit` user
attribute: at once, untrained, when its model has too many parameters; after the epoch that takes
its training time over the limit. Pruned, not failed, because TPE learns from completed and pruned
trials only (FAIL is invisible to it), and sorts every trial whose constraints are broken below the
feasible ones whatever its state; a pruned trial needs no accuracy, where a completed one would
need an invented one (which GP's model of the objective would then learn from).

A trial hpsearch stops itself ends as PRUNED too, for the same reasons, with its reason in the `stopped`
user attribute: a hopeless one (at chance, or its loss rising sharply: `hopeless`) after any epoch,
whatever the pruner's minimum; one whose projected training time passes what its run has left
(search/cost.py) before it trains, after its first steps or after any epoch. Baselines run their whole
budget: they are the comparison, never stopped but by a limit.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import re
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from hpsearch import record
from hpsearch.errors import interruption
from hpsearch.search import cost, curvepruning
from hpsearch.search.stop import StopRequested
from hpsearch.storage import trial_checkpoint
from hpsearch.studyfile import limits
from hpsearch.studyfile import params as P
from hpsearch.studyfile.baselines import BASELINES
from hpsearch.studyfile.types import StudySpec
from hpsearch.training import recipe, space, transfer, usercode
from hpsearch.training.checkpoint import CheckpointFile
from hpsearch.training.devicedata import DeviceData
from hpsearch.training.models import ArchitectureError, count_parameters
from hpsearch.training.train import Batches, EpochStats, TrainingDiverged
from hpsearch.record import TrialRecord

_CPU_ALLOCATION = re.compile(r"DefaultCPUAllocator: can't allocate memory: you tried to allocate (\d+) bytes")


def cpu_out_of_memory(exc: BaseException) -> str | None:
    """What a trial asked for, if `exc` is the CPU running out of memory (torch's allocator raises a plain
    RuntimeError, Python a MemoryError), else None."""
    if isinstance(exc, MemoryError):
        return "a Python allocation failed"
    if match := _CPU_ALLOCATION.search(str(exc)):
        return f"{int(match.group(1)) / 2**30:,.1f} GiB asked at once"
    return None


class TrialFailed(Exception):
    """An expected failure, recorded on the trial; the study continues."""


class OverLimit(optuna.TrialPruned):
    """A trial over one of the study's limits: it stops, and Optuna records it as pruned (see above)."""


class Stopped(optuna.TrialPruned):
    """A trial hpsearch stops itself, hopeless or out of time: Optuna records it as pruned (see above)."""


CHANCE_SIGMAS = 3  # standard errors above the majority class's share that a net that learned nothing rarely passes
LOSS_RISE = 2.0  # an epoch's mean training loss this many times the last one's, past a uniform guess's: diverging
HOPELESS_STEPS = 50  # optimizer steps a judgement needs: enough for any learning net to move its loss


def chance_accuracy(labels: torch.Tensor, classes: int) -> float:
    """The validation accuracy a net that learned nothing reaches: the most common class's share (always
    answering it), plus CHANCE_SIGMAS binomial standard errors of an accuracy measured on this many images
    (on CIFAR-10's 5,000: 0.1 + 0.013; on digits' 270: 0.1 + 0.055)."""
    share = torch.bincount(labels.cpu(), minlength=classes).max().item() / len(labels)
    return share + CHANCE_SIGMAS * math.sqrt(share * (1 - share) / len(labels))


def hopeless(history: list[EpochStats], chance: float, classes: int, steps_per_epoch: int) -> str | None:
    """Why a trial's epochs so far show it will not learn, or None.

    At chance: validation accuracy within chance_accuracy and a training loss no lower than a uniform guess's,
    ln(classes) (a net learning slowly has a lower loss before its accuracy shows it), after at least
    HOPELESS_STEPS steps (a CIFAR-10 epoch at batch 512 has 87; digits' at 128 has 9, so it waits for the 6th).
    Rising sharply: an epoch's mean training loss LOSS_RISE times the last one's and above a uniform guess's,
    the epochs each HOPELESS_STEPS steps or more: an average over so many steps that doubles is no noise, and a
    net worse than guessing has diverged (a NaN loss fails the trial already: train.TrainingDiverged).
    """
    last, uniform = history[-1], math.log(classes)
    if last.epoch * steps_per_epoch < HOPELESS_STEPS:
        return None
    if last.val_accuracy <= chance and last.train_loss >= uniform:
        return (f"at chance after epoch {last.epoch}: val {last.val_accuracy:.4f} (chance {chance:.4f}), "
                f"training loss {last.train_loss:.3f} (a uniform guess's {uniform:.3f})")
    if (len(history) > 1 and steps_per_epoch >= HOPELESS_STEPS
            and last.train_loss > max(LOSS_RISE * history[-2].train_loss, uniform)):
        return (f"training loss rising sharply in epoch {last.epoch}: {history[-2].train_loss:.3f} -> "
                f"{last.train_loss:.3f}")
    return None


class RunEvents:
    """What a display may want to hear about while a study runs. The defaults ignore it all."""

    def loading(self, what: str, done: int, total: int) -> None: ...  # e.g. decoding an image folder

    def study_opened(self, study: optuna.Study, data: DeviceData) -> None: ...

    def trial_started(self, number: int, params: dict[str, Any]) -> None: ...

    def batches_done(self, number: int, done: Batches) -> None: ...  # within an epoch, every few seconds

    def epoch_finished(self, number: int, stats: EpochStats) -> None: ...

    def trial_resumed(self, number: int, copy_of: int | None, epoch: int, restored: list[EpochStats]) -> None:
        """A trial (a copy of trial `copy_of`) resumed from its checkpoint at `epoch`; `restored`: the epochs before."""


class EventsTo(RunEvents):
    """Every event to each of `targets` in turn: the progress display, then a tracker (tracking.py)."""

    def __init__(self, *targets: RunEvents):
        self.targets = targets

    def loading(self, what: str, done: int, total: int) -> None:
        for target in self.targets:
            target.loading(what, done, total)

    def study_opened(self, study: optuna.Study, data: DeviceData) -> None:
        for target in self.targets:
            target.study_opened(study, data)

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        for target in self.targets:
            target.trial_started(number, params)

    def batches_done(self, number: int, done: Batches) -> None:
        for target in self.targets:
            target.batches_done(number, done)

    def epoch_finished(self, number: int, stats: EpochStats) -> None:
        for target in self.targets:
            target.epoch_finished(number, stats)

    def trial_resumed(self, number: int, copy_of: int | None, epoch: int, restored: list[EpochStats]) -> None:
        for target in self.targets:
            target.trial_resumed(number, copy_of, epoch, restored)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


SLURM_VARIABLES = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID",
                   "array_task_id": "SLURM_ARRAY_TASK_ID", "restart_count": "SLURM_RESTART_COUNT"}


def slurm_job() -> dict[str, int]:
    """The SLURM job running this worker, from the variables SLURM sets ({} outside SLURM): which array task
    ran a trial, and after how many requeues (SLURM sets no SLURM_RESTART_COUNT before the first)."""
    job = {key: int(os.environ[name]) for key, name in SLURM_VARIABLES.items() if os.environ.get(name, "").isdigit()}
    return {**job, "restart_count": job.get("restart_count", 0)} if "job_id" in job else {}


def make_objective(spec: StudySpec, data: DeviceData, events: RunEvents | None = None, *,
                   checkpoints: Path | None = None,
                   on_complete: Callable[[optuna.Trial, torch.nn.Module, TrialRecord], None] | None = None,
                   source: transfer.Source | None = None, time_left: Callable[[], float | None] = lambda: None,
                   at_epoch_end: Callable[[], None] = lambda: None):
    """The Optuna objective for `spec` on already loaded `data`: validation accuracy, maximised (and,
    with two objectives, the trial's parameter count or training seconds, minimised).

    With `checkpoints` (a folder), each trial saves its training state after every epoch there,
    and a retried copy of a trial whose worker died resumes from it instead of from epoch 1.
    on_complete(trial, model, record) runs after a trial trained to the end, while the trial can still
    take attributes and artifacts (artifacts.WeightKeeper keeps the best trials' weights).
    source: the trained model a study with init: starts from; its config, where it has one, is
    every trial's architecture.
    time_left() gives the seconds the run has left (None: no timeout): a trial projected past them stops.
    at_epoch_end() runs at each epoch end but the last: it raises stop.StopRequested once `hpsearch stop` has
    named the run.
    """
    events = events or RunEvents()
    device = data.train_x.device
    architecture = source.config if source is not None else None
    where = record.Provenance(device=device_name(device), torch=torch.__version__, optuna=optuna.__version__,
                              dataset_source=data.source, worker=f"{socket.gethostname()}:{os.getpid()}",
                              slurm=slurm_job() or None)

    multi_objective = len(spec.objectives) > 1
    chance = chance_accuracy(data.val_y, data.num_classes)
    speed = cost.Speed()  # this worker's, measured by its trials' probes

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        baseline = record.baseline(trial)  # set when the run queued it (run.baseline_due)
        params = BASELINES[baseline].config(architecture) if baseline else space.sample(trial, spec, architecture)
        if baseline and (at := space.point(spec, params, architecture)) and at.params == record.queued_params(trial):
            space.sample(trial, spec, architecture)  # records the point run.py queued, with the space's distributions
        epochs = P.trial_epochs(params, spec.budget.epochs)
        recipe_record = TrialRecord(params, spec.dataset.recorded(), epochs, spec.seed, source and source.init,
                                    data.shape, data.num_classes,
                                    usercode.code_record(params["family"], spec.dataset.name))
        record.started(trial, recipe_record, where)
        events.trial_started(trial.number, params)
        started = time.perf_counter()
        epochs_run = 0
        history: list[EpochStats] = []  # every epoch as on_epoch heard of it, restored ones included
        checkpoint = _checkpoint_file(checkpoints, trial, recipe_record) if checkpoints else None
        priced: dict[str, Any] = {}  # the trial's `cost` attribute, as it is learned

        def train_seconds() -> float:
            return round(sum(s.seconds for s in history), 3)

        def out_of_time(what: str, projected: float, when: str) -> None:
            """Stop the trial if `what`, projected at `projected` seconds, passes what the run has left."""
            if not baseline and (why := cost.over_time_left(what, projected, time_left())):
                raise Stopped(f"{why}: {when}")

        def on_pace(step_seconds: float) -> None:
            speed.measured(work, step_seconds)
            priced.update(step_seconds=round(step_seconds, 6),
                          probed_seconds=round(work.seconds_from_step(step_seconds), 1))
            record.priced(trial, priced)
            out_of_time("its measured pace", priced["probed_seconds"], "stopped after its first steps")

        def on_epoch(stats: EpochStats) -> None:
            nonlocal epochs_run
            if epochs_run == 0 and stats.epoch > 1:  # fit resumed a checkpoint of an earlier attempt
                record.resumed(trial, stats.epoch - 1)
                restored = _restored(trial, checkpoint, before=stats.epoch, report=not multi_objective)
                history.extend(restored)
                events.trial_resumed(trial.number, record.copy_of(trial), stats.epoch, restored)
            epochs_run = stats.epoch
            history.append(stats)
            if multi_objective:
                record.curve_so_far(trial, [s.val_accuracy for s in history])
            else:
                trial.report(stats.val_accuracy, stats.epoch)
            events.epoch_finished(trial.number, stats)
            if stats.epoch < epochs:
                at_epoch_end()
            if reason := limits.over(spec.limits, "train_seconds", train_seconds()):
                raise OverLimit(f"{reason} after epoch {stats.epoch}")
            if baseline or stats.epoch == epochs:  # a baseline runs its full budget; a trained trial completes
                return
            if why := hopeless(history, chance, data.num_classes, work.steps_per_epoch):
                raise Stopped(why)
            out_of_time(f"the rest of its training ({stats.seconds:.1f} s an epoch)",
                        (work.epochs - stats.epoch) * stats.seconds, f"stopped after epoch {stats.epoch}")
            if curvepruning.should_prune(trial) if multi_objective else trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {stats.epoch} (val {stats.val_accuracy:.4f})")

        def on_built(model: torch.nn.Module) -> None:
            param_count = count_parameters(model)
            record.built(trial, param_count)
            limits.record(trial, spec.limits, "params", param_count)
            if reason := limits.over(spec.limits, "params", param_count):
                raise OverLimit(f"{reason}: not trained")
            if (projected := speed.projected(work)) is not None:
                priced["projected_seconds"] = round(projected, 1)
                record.priced(trial, priced)
                out_of_time("its training", projected, "not trained")

        try:
            work = cost.work(params, spec, data)
            priced.update(multiply_adds_per_image=work.per_image, multiply_adds=work.multiply_adds)
            record.priced(trial, priced)
            trained = recipe.train(params, data, epochs=epochs, seed=spec.seed, source=source,
                                   on_built=on_built, on_epoch=on_epoch,
                                   on_batches=lambda done: events.batches_done(trial.number, done),
                                   checkpoint=checkpoint, on_pace=on_pace)  # on_epoch keeps `history`
            model = trained.model
            record.trained(trial, trainable_count=sum(p.numel() for p in model.parameters() if p.requires_grad),
                           train_seconds=train_seconds(), val_accuracy=history[-1].val_accuracy,
                           test_accuracy=trained.test_accuracy)
            limits.record(trial, spec.limits, "train_seconds", train_seconds())
            if on_complete is not None:
                on_complete(trial, model, recipe_record)
            if multi_objective:
                return history[-1].val_accuracy, record.measured(trial, spec.objectives[1])
            return history[-1].val_accuracy
        except optuna.TrialPruned as exc:  # by the pruner, over a limit, or stopped
            record.pruned(trial, train_seconds=train_seconds(), over_limit=str(exc) if isinstance(exc, OverLimit) else None,
                          stopped=str(exc) if isinstance(exc, Stopped) else None)
            limits.record(trial, spec.limits, "train_seconds", train_seconds())
            raise
        except (ArchitectureError, TrainingDiverged) as exc:
            failure = str(exc)
        except StopRequested as exc:  # at an epoch end: the checkpoint is kept for the copy, unless discarded
            record.stopped_by_request(trial, str(exc))
            if not exc.discard:
                checkpoint = None
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as errors.Terminated
            record.failed(trial, f"{interruption(exc)}; run the same command again to resume")
            checkpoint = None  # kept for the resumed copy
            raise  # Optuna records the trial as FAIL, never RUNNING, and the CLI exits 130 (143 for SIGTERM)
        except torch.OutOfMemoryError:
            failure = f"CUDA out of memory (batch_size {params['batch_size']}); memory freed, the study goes on"
        except (RuntimeError, MemoryError) as exc:
            if (asked := cpu_out_of_memory(exc)) is None:
                raise
            failure = (f"out of memory on the CPU ({asked}; batch_size {params['batch_size']}); memory freed, "
                       "the study goes on")
        finally:
            if checkpoint is not None:
                checkpoint.delete()
            record.ended(trial, epochs_trained=epochs_run, seconds=round(time.perf_counter() - started, 3))
        # Out of the except blocks, nothing refers to the failed step's tensors any more.
        model = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        record.failed(trial, failure)
        raise TrialFailed(failure)

    return objective


def _restored(trial: optuna.Trial, checkpoint: CheckpointFile, *, before: int, report: bool) -> list[EpochStats]:
    """The restored epochs (those before `before`), each reported again with `report`: the last one's
    report is missing if the earlier attempt's worker died between saving its checkpoint and reporting
    it. Optuna keeps the first report of a step."""
    restored = [EpochStats(**past) for past in checkpoint.load().history if past["epoch"] < before]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the reported value is ignored because this step is already reported"
        for past in restored if report else ():
            trial.report(past.val_accuracy, past.epoch)
    return restored


def _checkpoint_file(folder: Path, trial: optuna.Trial, recipe_record: TrialRecord) -> CheckpointFile:
    """Every attempt of a trial shares the first attempt's checkpoint (Optuna records the chain), labelled with
    the trial's recipe."""
    return CheckpointFile(trial_checkpoint(folder, trial.study.study_name, record.first_attempt(trial)),
                          json.dumps(recipe_record.config(), sort_keys=True))
