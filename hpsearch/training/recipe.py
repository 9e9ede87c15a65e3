"""A trial's recipe trained: build, fit the data-dependent weights, transfer, fit, evaluate.

The one build-and-fit sequence in hpsearch: a trial (objective.py), `hpsearch train` and `confirm`
(retrain.retrain) and the benchmarks all train through `train`, so a config trained again with its
seed on the CPU gives the trial's accuracies exactly, transfer trials included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hpsearch.errors import HpsearchError
from hpsearch.training import space, transfer
from hpsearch.training.checkpoint import CheckpointFile
from hpsearch.training.data_init import init_from_data
from hpsearch.training.devicedata import DeviceData
from hpsearch.training.models import build_model
from hpsearch.training.train import Batches, EpochStats, evaluate, fit, prepare


@dataclass(frozen=True)
class Trained:
    model: nn.Module
    history: list[EpochStats]
    val_accuracy: float
    test_accuracy: float


def train(params: dict, data: DeviceData, *, epochs: int, seed: int, source: transfer.Source | None = None,
          on_built: Callable[[nn.Module], None] = lambda model: None,
          on_epoch: Callable[[EpochStats], None] | None = None,
          on_batches: Callable[[Batches], None] | None = None,
          checkpoint: CheckpointFile | None = None,
          on_pace: Callable[[float], None] | None = None) -> Trained:
    """Train `params` for `epochs` on `data` (on its device) with `seed`, starting from `source` where
    params['pretrained'] says so; the learning-rate schedule spans the `epochs`. on_built(model) sees the
    model before any weights are fitted: it may stop the run by raising (a study's parameter limit: the
    whitening fit takes a while). on_epoch and on_batches hear of the training as fit tells them; on_pace
    hears the measured seconds per training step early in the first epoch (train.fit)."""
    torch.manual_seed(seed)
    model = build_model(space.model_config(params, data.shape, data.num_classes))
    on_built(model)
    init_from_data(model, data)
    reused: frozenset[str] = frozenset()
    if params.get("pretrained"):
        if source is None:
            raise HpsearchError("params.pretrained is true but no init names the weights to start from")
        reused = transfer.apply(model, source, params, data.shape)
    model = prepare(model, data.train_x.device)
    train_cfg = space.train_config(params, epochs=epochs, seed=seed)
    history = fit(model, data, train_cfg, on_epoch, on_batches=on_batches, checkpoint=checkpoint, reused=reused,
                  on_pace=on_pace)
    test_accuracy = evaluate(model, data, data.test_x, data.test_y, tta=train_cfg.tta)
    return Trained(model, history, history[-1].val_accuracy, test_accuracy)
