"""Training as a plain function: fit(model, data, config, on_epoch) -> per-epoch history.

The data is already on the device as uint8; each epoch is one permutation and one augmentation
pass over the whole training split, then slices of it. The step loop never synchronises with
the host: the loss is summed on the device and read once per epoch, which is also where a
NaN or infinite loss is caught. On CUDA the forward pass runs in bf16 autocast, channels_last.
With `ema`, validation (and whatever the caller does with the model afterwards) sees an
exponential moving average of the weights instead of the live ones; with `tta`, every evaluation
averages the logits of mirrored (and shifted) copies of each image.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
from torch import nn

from hpsearch import stopping
from hpsearch.training.augment import Augment, alternating_flips
from hpsearch.training.checkpoint import Checkpoint, CheckpointFile
from hpsearch.training.devicedata import DeviceData

EVAL_BATCH = 2048  # inference needs no activations for backward: large batches are free speed
PACE_WARMUP, PACE_STEPS = 1, 4  # the pace probe: steps untimed (allocation, autotuning), then steps timed


@dataclass(frozen=True)
class TrainConfig:
    """How a model trains: built from a trial's params by space.train_config, the parameter table
    (studyfile/params.py) being the one home of every default."""

    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float  # SGD's
    weight_decay: float
    schedule: str
    warmup_fraction: float  # warmup_linear's
    label_smoothing: float
    reused_lr_ratio: float  # lr multiplier of layers that keep trained weights (see transfer.py)
    bn_bias_lr_scale: float  # lr multiplier of BatchNorm biases (their weight decay divided by it)
    bn_weight_decay: bool  # False: BatchNorm weights and biases decay not at all
    augment: Augment
    ema: float  # decay per step of the weight average that is evaluated (0: none; the live weights are)
    tta: str  # test-time augmentation of every evaluation: none, flip, flip_translate
    seed: int


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_loss: float
    val_accuracy: float
    seconds: float  # wall time of this epoch, evaluation included


@dataclass(frozen=True)
class Batches:
    """How far an epoch has got, as fit tells on_batches every BATCHES_EVERY_S or so inside it. On a GPU the
    batches are those queued: the host runs ahead of the device by a bounded queue, so after the first seconds
    the rate is the device's."""

    epoch: int  # 1-based
    epochs: int
    done: int  # batches of this epoch trained
    total: int  # batches in the epoch
    batch_size: int
    seconds: float  # since the epoch started

    @property
    def images_per_s(self) -> float:
        return self.done * self.batch_size / self.seconds if self.seconds > 0 else 0.0

    @property
    def projected_s(self) -> float:
        """The epoch's training time at this rate (its evaluation, after the last batch, not included)."""
        return self.seconds * self.total / self.done


BATCHES_EVERY_S = 2.0  # fit calls on_batches at most this often: a clock check a batch, nothing read off the device


class TrainingDiverged(Exception):
    """The loss became NaN or infinite: the trial ends with this as its recorded reason."""


def lr_factor(schedule: str, step: int, total_steps: int, warmup_fraction: float) -> float:
    """Multiplier of the peak learning rate at `step` (0-based) of `total_steps`: a pure function."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    if schedule == "warmup_linear":
        warmup = warmup_fraction * total_steps
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1.0, total_steps - warmup))
    raise ValueError(f"unknown schedule {schedule!r}")


BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def make_optimizer(model: nn.Module, cfg: TrainConfig, reused: Collection[str] = ()) -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters, in groups by learning rate and weight decay.

    Each group's "lr_scale" multiplies the scheduled learning rate: cfg.reused_lr_ratio for the
    parameters named in `reused` (trained weights a transfer keeps), times cfg.bn_bias_lr_scale
    for BatchNorm biases, whose weight decay is divided by that factor so that the decay per step
    stays the others' (Page's ResNet-9 and airbench94: 64x the lr, 1/64 the decay). With
    cfg.bn_weight_decay off, BatchNorm weights and biases have no weight decay. Parameters keep
    model order within a group; groups not taken from `reused` come first.
    """
    batchnorm = {id(m.weight): "weight" for m in model.modules() if isinstance(m, BATCHNORMS) and m.affine}
    batchnorm |= {id(m.bias): "bias" for m in model.modules() if isinstance(m, BATCHNORMS) and m.affine}
    reused = set(reused)
    groups: dict[tuple[bool, float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr_scale, weight_decay = (cfg.reused_lr_ratio if name in reused else 1.0), cfg.weight_decay
        if batchnorm.get(id(p)) == "bias":
            lr_scale, weight_decay = lr_scale * cfg.bn_bias_lr_scale, weight_decay / cfg.bn_bias_lr_scale
        if id(p) in batchnorm and not cfg.bn_weight_decay:
            weight_decay = 0.0
        groups.setdefault((name in reused, lr_scale, weight_decay), []).append(p)
    params = [{"params": group, "lr_scale": lr_scale, "weight_decay": weight_decay}
              for (_, lr_scale, weight_decay), group in sorted(groups.items(), key=lambda item: item[0][0])]
    if cfg.optimizer in ("sgd", "sgd_nesterov"):
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.optimizer == "sgd_nesterov" and cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def classification_loss(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy over the classes; for a single logit, binary cross-entropy (a sigmoid head)."""
    if logits.shape[1] == 1:
        target = y.float() * (1.0 - label_smoothing) + 0.5 * label_smoothing
        return nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), target)
    return nn.functional.cross_entropy(logits, y, label_smoothing=label_smoothing)


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Class indices: the largest logit, or for a single sigmoid logit, whether it is positive."""
    return (logits.squeeze(1) > 0).long() if logits.shape[1] == 1 else logits.argmax(dim=1)


def prepare(model: nn.Module, device: torch.device) -> nn.Module:
    """Move a model to the training device in the layout the data uses there."""
    if device.type == "cuda":
        return model.to(device, memory_format=torch.channels_last)
    return model.to(device)


def fit(model: nn.Module, data: DeviceData, cfg: TrainConfig,
        on_epoch: Callable[[EpochStats], None] | None = None, *,
        on_batches: Callable[[Batches], None] | None = None,
        checkpoint: CheckpointFile | None = None, reused: Collection[str] = (),
        on_pace: Callable[[float], None] | None = None) -> list[EpochStats]:
    """Train `model` (already on the data's device) for cfg.epochs; call on_epoch after each, and on_batches
    inside each, after a batch, once BATCHES_EVERY_S have passed since the epoch's start or its last call.

    Parameters with requires_grad False stay as they are; those named in `reused` train at
    cfg.reused_lr_ratio times the learning rate. on_epoch may raise (optuna.TrialPruned) to stop
    early. Raises TrainingDiverged on NaN/inf loss. With cfg.ema, validation sees the averaged
    weights, and `model` holds them when fit returns (for testing, saving, keeping).
    With `checkpoint`, training resumes from it if it exists and saves it after every epoch, before
    on_epoch hears of it, so an interrupted run continues exactly where it stopped (bit for bit on
    the CPU).
    on_pace(seconds_per_step) is called once, in the first epoch this call trains, after PACE_STEPS timed
    steps that follow PACE_WARMUP untimed ones (an epoch too short for them has no probe): the trial's pace,
    measured on its own steps, may stop it by raising.
    A stop asked for (stopping.py: Ctrl-C, SIGTERM) is raised before the next step.
    """
    device = data.train_x.device
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    optimizer = make_optimizer(model, cfg, reused)
    average = WeightAverage(model, cfg.ema) if cfg.ema > 0 else None
    n = len(data.train_y)
    batch = min(cfg.batch_size, n)
    steps_per_epoch = n // batch  # the remainder is dropped; the next epoch reshuffles it in
    total_steps = steps_per_epoch * cfg.epochs
    history: list[EpochStats] = []
    saved = checkpoint.load(like=_snapshot([], model, optimizer, generator, average)) if checkpoint else None
    if saved is not None:
        history = _restore(saved, model, optimizer, generator, average)
    step = len(history) * steps_per_epoch
    probe = on_pace is not None and steps_per_epoch > PACE_WARMUP + PACE_STEPS
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        started = time.perf_counter()
        batches_due = started + BATCHES_EVERY_S
        model.train()
        x_epoch, y_epoch = epoch_images(data, cfg, epoch, generator)
        loss_sum = torch.zeros((), device=device)
        for i in range(steps_per_epoch):
            stopping.check()
            if probe and i == PACE_WARMUP:
                timed_from = _synchronized_clock(device)
            elif probe and i == PACE_WARMUP + PACE_STEPS:
                probe = False
                on_pace((_synchronized_clock(device) - timed_from) / PACE_STEPS)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * group["lr_scale"] * lr_factor(cfg.schedule, step, total_steps,
                                                                    cfg.warmup_fraction)
            xb = data.normalize(x_epoch[i * batch:(i + 1) * batch])
            yb = y_epoch[i * batch:(i + 1) * batch]
            with _autocast(device):
                loss = classification_loss(model(xb), yb, cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update(step)
            loss_sum += loss.detach().float()
            step += 1
            if on_batches is not None and (now := time.perf_counter()) >= batches_due:
                on_batches(Batches(epoch, cfg.epochs, i + 1, steps_per_epoch, batch, now - started))
                batches_due = now + BATCHES_EVERY_S
        train_loss = (loss_sum / steps_per_epoch).item()
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"training loss became {train_loss} in epoch {epoch} (lr {cfg.lr:g})")
        evaluated = average.model if average is not None else model
        val_accuracy = evaluate(evaluated, data, data.val_x, data.val_y, tta=cfg.tta)
        stats = EpochStats(epoch, train_loss, val_accuracy, time.perf_counter() - started)
        history.append(stats)
        if checkpoint is not None and epoch < cfg.epochs:  # first: a worker killed after reporting loses nothing
            checkpoint.save(_snapshot(history, model, optimizer, generator, average))
        if on_epoch is not None:
            on_epoch(stats)
    if average is not None:
        model.load_state_dict(average.model.state_dict())
    return history


def _synchronized_clock(device: torch.device) -> float:
    """perf_counter once the device has done the work queued so far (CUDA runs steps ahead of the host)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def epoch_images(data: DeviceData, cfg: TrainConfig, epoch: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Epoch `epoch`'s (1-based) training images and labels: the whole split in a new order, augmented."""
    order = torch.randperm(len(data.train_y), device=data.train_x.device, generator=generator)
    x, y = data.train_x[order], data.train_y[order]
    if cfg.augment.active:
        flips = alternating_flips(order, epoch, cfg.seed) if cfg.augment.alternating_flip else None
        x = cfg.augment(x, generator, flips=flips)
    return x, y


class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm statistics, as a model.

    Floating-point buffers (BatchNorm's running mean and variance) are averaged like the weights,
    as torch's AveragedModel(use_buffers=True) and airbench's and hlb-cifar10's EMAs do: statistics
    gathered along the averaged trajectory fit the averaged weights, where copying the live ones
    would pair today's statistics with weights from many steps back; recomputing them
    (swa_utils.update_bn) would cost a pass over the data each epoch. Integer buffers (batch
    counts) are copied. Update n uses the decay min(decay, (1 + n) / (10 + n)), as
    tf.train.ExponentialMovingAverage with num_updates does, so the initial weights do not
    dominate a short run.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))  # views, updated in place
        floats = [(a, b) for a, b in pairs if a.is_floating_point()]
        self._averaged, self._live = [a for a, _ in floats], [b for _, b in floats]
        self._others = [(a, b) for a, b in pairs if not a.is_floating_point()]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average towards the live weights after optimizer step `step` (0-based)."""
        torch._foreach_lerp_(self._averaged, self._live, 1.0 - min(self.decay, (1 + step) / (10 + step)))
        for a, b in self._others:
            a.copy_(b)


def _snapshot(history: list[EpochStats], model: nn.Module, optimizer: torch.optim.Optimizer,
              generator: torch.Generator, average: WeightAverage | None) -> Checkpoint:
    return Checkpoint(epoch=len(history), model=model.state_dict(), optimizer=optimizer.state_dict(),
                      generator=generator.get_state(), cpu_rng=torch.get_rng_state(),
                      cuda_rng=torch.cuda.get_rng_state() if generator.device.type == "cuda" else None,
                      history=[vars(h) for h in history],
                      average=average.model.state_dict() if average is not None else None)


def _restore(saved: Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer,
             generator: torch.Generator, average: WeightAverage | None) -> list[EpochStats]:
    model.load_state_dict(saved.model)
    optimizer.load_state_dict(saved.optimizer)
    generator.set_state(saved.generator)
    torch.set_rng_state(saved.cpu_rng)
    if saved.cuda_rng is not None and generator.device.type == "cuda":
        torch.cuda.set_rng_state(saved.cuda_rng)
    if average is not None:
        average.model.load_state_dict(saved.average)
    return [EpochStats(**h) for h in saved.history]


@torch.inference_mode()
def evaluate(model: nn.Module, data: DeviceData, x: torch.Tensor, y: torch.Tensor, *, tta: str = "none") -> float:
    """Top-1 accuracy of `model` on uint8 images `x` with labels `y`, with test-time augmentation `tta`."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for start in range(0, len(y), EVAL_BATCH):
        with _autocast(x.device):
            logits = tta_logits(model, data.normalize(x[start:start + EVAL_BATCH]), tta)
        correct += (predict(logits) == y[start:start + EVAL_BATCH]).sum()
    return correct.item() / len(y)


def tta_logits(model: nn.Module, x: torch.Tensor, tta: str) -> torch.Tensor:
    """The logits of normalised images `x`, averaged over their test-time augmented views.

    As airbench94 does: 'flip' averages each image and its mirror; 'flip_translate' gives that
    average weight 1/2, and 1/4 each to the same average over the image shifted one pixel up-left
    and one down-right (reflection padding), six passes in all. Logits are averaged, not
    probabilities; a single sigmoid logit averages the same way.
    """
    if tta == "none":
        return model(x)

    def mirrored(images: torch.Tensor) -> torch.Tensor:
        return 0.5 * model(images).float() + 0.5 * model(images.flip(3)).float()

    if tta == "flip":
        return mirrored(x)
    if tta == "flip_translate":
        height, width = x.shape[2:]
        padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = mirrored(padded[:, :, :height, :width]) + mirrored(padded[:, :, 2:, 2:])
        return 0.5 * mirrored(x) + 0.25 * shifted
    raise ValueError(f"unknown tta {tta!r}")


def _autocast(device: torch.device):
    """bf16 autocast on CUDA; plain float32 on the CPU, so CPU results are exact and repeatable."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
