"""What a trial costs, known before it trains, and the rule that decides whether it may train.

The rule (docs/concepts/time-to-target.md, "What a trial costs"): a new study's start-up trials, which its
sampler would draw at random, are the cheapest of DRAWS_PER_START times as many random draws, run cheapest
first; and every trial's training time is projected before it trains, again from its own pace measured on
its first steps, and after every epoch, and a trial whose projection passes what its run has left
(`--timeout`, `budget.timeout`) is not started, or is stopped there, as pruned with the reason.

Cost is counted in multiply-adds: a model's forward pass on one image, counted on the meta device (no
weights, no data: milliseconds), times the images a trial passes through it. A worker turns multiply-adds
into seconds with the steps its trials' probes measured (Speed); a probe is a trial's own first training
steps, timed after a warm-up (train.fit's on_pace), so it costs nothing a trial would not spend anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from torch.utils.flop_counter import FlopCounterMode

from hpsearch.studyfile import params as P
from hpsearch.studyfile.types import StudySpec
from hpsearch.training import space
from hpsearch.training.devicedata import DeviceData
from hpsearch.training.models import ArchitectureError, BuilderFailed, build_model

DRAWS_PER_START = 3  # random draws per start-up trial: the cheapest third of them are run
TRAIN_PASSES = 3  # a training step costs about three forward passes: the forward, and a backward of twice it
TTA_PASSES = {"none": 1, "flip": 2, "flip_translate": 6}  # forward passes per evaluated image (train.tta_logits)


def multiply_adds(params: Mapping[str, Any], shape: tuple[int, int, int], classes: int) -> int:
    """Multiply-adds of the model's forward pass on one image, counted on the meta device (a user's model that
    needs real tensors to be built, on the CPU). Raises ArchitectureError where the model does not fit the input."""
    config = space.model_config(params, shape, classes)
    try:
        with torch.device("meta"):
            model, device = build_model(config).eval(), "meta"  # BatchNorm takes one image in eval mode
    except BuilderFailed:  # a builder that reads its tensors' values (.item(), numpy) fails there: not a real failure
        model, device = build_model(config).eval(), "cpu"
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *shape, device=device))
    return counter.get_total_flops() // 2  # the counter counts a multiply and an add as two


@dataclass(frozen=True)
class Work:
    """What a trial computes: forward multiply-adds per image, and the images it passes, per epoch."""

    per_image: int
    epochs: int
    batch_size: int
    steps_per_epoch: int  # training steps an epoch (train.fit drops the remainder)
    eval_images: int  # validation images an epoch, times the test-time passes over each

    @property
    def step_multiply_adds(self) -> int:
        """A training step's."""
        return TRAIN_PASSES * self.batch_size * self.per_image

    @property
    def multiply_adds(self) -> int:
        """The whole trial's, training and validation."""
        return self.epochs * (self.steps_per_epoch * self.step_multiply_adds + self.eval_images * self.per_image)

    def seconds_from_step(self, step_seconds: float) -> float:
        """The trial's training time, given its measured seconds per training step: an evaluated image
        costs a forward pass, a third of what each image of a step costs."""
        per_image = step_seconds / (TRAIN_PASSES * self.batch_size)
        return self.epochs * (self.steps_per_epoch * step_seconds + self.eval_images * per_image)


def work(params: Mapping[str, Any], spec: StudySpec, data: DeviceData) -> Work:
    """A trial's work on `data` (params complete, as space.sample gives them). Raises ArchitectureError."""
    batch = min(params["batch_size"], len(data.train_y))
    return Work(per_image=multiply_adds(params, data.shape, data.num_classes), epochs=P.trial_epochs(params, spec.budget.epochs),
                batch_size=batch, steps_per_epoch=len(data.train_y) // batch,
                eval_images=len(data.val_y) * TTA_PASSES[params["tta"]])


class Speed:
    """A worker's measured steps: the multiply-adds and seconds of each probe's training step.

    A candidate's step is projected at the least they allow: no faster than a lighter step took, and no faster
    a multiply-add than a heavier step (per-step overheads are fixed, so a bigger step is never less
    efficient). A projection is then never above what the probes imply: a candidate is refused before it
    trains only when even that cannot fit, and its own probe judges it again a few steps in.
    """

    def __init__(self) -> None:
        self.steps: list[tuple[int, float]] = []  # (multiply-adds of a step, its seconds)

    def measured(self, work: Work, step_seconds: float) -> None:
        self.steps.append((work.step_multiply_adds, step_seconds))

    def projected(self, work: Work) -> float | None:
        """The trial's training seconds at the least the probes allow, or None before any probe."""
        if not self.steps:
            return None
        ours = work.step_multiply_adds
        step = max(seconds if ours >= theirs else seconds * ours / theirs for theirs, seconds in self.steps)
        return work.seconds_from_step(step)


def over_time_left(what: str, projected: float, left: float | None) -> str | None:
    """Why a trial whose `what` is projected at `projected` seconds cannot fit in the `left` seconds its run
    has (None: the run has no timeout), or None if it fits."""
    if left is None or projected <= left:
        return None
    return f"{what} projects {_seconds(projected)}, more than the {_seconds(max(left, 0.0))} its run has left"


def _seconds(seconds: float) -> str:
    return f"{seconds:,.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def start_up_draws(spec: StudySpec, data: DeviceData, count: int, seed: int | None,
                   architecture: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """`count` start-up trials, as Optuna params to queue: the cheapest of DRAWS_PER_START x count random draws
    from the study's space, cheapest first. A draw whose architecture does not fit the data is left out (it
    would fail)."""
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    priced = []
    for _ in range(DRAWS_PER_START * count):
        trial = scratch.ask()
        params = space.sample(trial, spec, architecture)
        try:
            priced.append((work(params, spec, data).multiply_adds, len(priced), trial.params))
        except ArchitectureError:
            continue
    return [drawn for _, _, drawn in sorted(priced)[:count]]
