"""Training as a plain function: fit(model, data, config, on_epoch) -> per-epoch history.

The data is already on the device as uint8; each epoch is one permutation and one augmentation
pass over the whole training split, then slices of it. The step loop never synchronises with
the host: the loss is summed on the device and read once per epoch, which is also where a
NaN or infinite loss is caught. On CUDA the forward pass runs in bf16 autocast, channels_last.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import torch
from torch import nn

from hpsearch.augment import Augment
from hpsearch.checkpoint import Checkpoint, CheckpointFile
from hpsearch.data import DeviceData

EVAL_BATCH = 2048  # inference needs no activations for backward: large batches are free speed


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int = 128
    optimizer: str = "sgd_nesterov"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_fraction: float = 0.2
    label_smoothing: float = 0.0
    reused_lr_ratio: float = 1.0  # lr multiplier of layers that keep trained weights (see transfer.py)
    augment: Augment = field(default_factory=Augment)
    seed: int = 0


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_loss: float
    val_accuracy: float
    seconds: float  # wall time of this epoch, evaluation included


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


def make_optimizer(model: nn.Module, cfg: TrainConfig, reused: Collection[str] = ()) -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters; those named in `reused` (trained weights a
    transfer keeps) form a second group at cfg.reused_lr_ratio times the learning rate."""
    trainable, reused = [(name, p) for name, p in model.named_parameters() if p.requires_grad], set(reused)
    groups = [{"params": [p for name, p in trainable if name not in reused], "lr_scale": 1.0},
              {"params": [p for name, p in trainable if name in reused], "lr_scale": cfg.reused_lr_ratio}]
    params = [group for group in groups if group["params"]]
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
        checkpoint: CheckpointFile | None = None, reused: Collection[str] = ()) -> list[EpochStats]:
    """Train `model` (already on the data's device) for cfg.epochs; call on_epoch after each.

    Parameters with requires_grad False stay as they are; those named in `reused` train at
    cfg.reused_lr_ratio times the learning rate. on_epoch may raise (optuna.TrialPruned) to stop
    early. Raises TrainingDiverged on NaN/inf loss.
    With `checkpoint`, training resumes from it if it exists and saves it after every epoch, before
    on_epoch hears of it, so an interrupted run continues exactly where it stopped (bit for bit on
    the CPU).
    """
    device = data.train_x.device
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    optimizer = make_optimizer(model, cfg, reused)
    n = len(data.train_y)
    batch = min(cfg.batch_size, n)
    steps_per_epoch = n // batch  # the remainder is dropped; the next epoch reshuffles it in
    total_steps = steps_per_epoch * cfg.epochs
    history: list[EpochStats] = []
    saved = checkpoint.load() if checkpoint else None
    if saved is not None:
        history = _restore(saved, model, optimizer, generator)
    step = len(history) * steps_per_epoch
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, device=device, generator=generator)
        x_epoch, y_epoch = data.train_x[order], data.train_y[order]
        if cfg.augment.active:
            x_epoch = cfg.augment(x_epoch, generator)
        loss_sum = torch.zeros((), device=device)
        for i in range(steps_per_epoch):
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
            loss_sum += loss.detach().float()
            step += 1
        train_loss = (loss_sum / steps_per_epoch).item()
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"training loss became {train_loss} in epoch {epoch} (lr {cfg.lr:g})")
        val_accuracy = evaluate(model, data, data.val_x, data.val_y)
        stats = EpochStats(epoch, train_loss, val_accuracy, time.perf_counter() - started)
        history.append(stats)
        if checkpoint is not None and epoch < cfg.epochs:  # first: a worker killed after reporting loses nothing
            checkpoint.save(_snapshot(history, model, optimizer, generator))
        if on_epoch is not None:
            on_epoch(stats)
    return history


def _snapshot(history: list[EpochStats], model: nn.Module, optimizer: torch.optim.Optimizer,
              generator: torch.Generator) -> Checkpoint:
    return Checkpoint(epoch=len(history), model=model.state_dict(), optimizer=optimizer.state_dict(),
                      generator=generator.get_state(), cpu_rng=torch.get_rng_state(),
                      cuda_rng=torch.cuda.get_rng_state() if generator.device.type == "cuda" else None,
                      history=[vars(h) for h in history])


def _restore(saved: Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer,
             generator: torch.Generator) -> list[EpochStats]:
    model.load_state_dict(saved.model)
    optimizer.load_state_dict(saved.optimizer)
    generator.set_state(saved.generator)
    torch.set_rng_state(saved.cpu_rng)
    if saved.cuda_rng is not None and generator.device.type == "cuda":
        torch.cuda.set_rng_state(saved.cuda_rng)
    return [EpochStats(**h) for h in saved.history]


@torch.inference_mode()
def evaluate(model: nn.Module, data: DeviceData, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of `model` on uint8 images `x` with labels `y`."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for start in range(0, len(y), EVAL_BATCH):
        with _autocast(x.device):
            logits = model(data.normalize(x[start:start + EVAL_BATCH]))
        correct += (predict(logits) == y[start:start + EVAL_BATCH]).sum()
    return correct.item() / len(y)


def _autocast(device: torch.device):
    """bf16 autocast on CUDA; plain float32 on the CPU, so CPU results are exact and repeatable."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
