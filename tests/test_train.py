"""Real short trainings on digits: well above chance, repeatable to the bit, NaN caught."""

from __future__ import annotations

import math

import pytest
import torch

from hpsearch import data
from hpsearch.models import build_model
from hpsearch.space import model_config, train_config
from hpsearch.spectypes import DatasetSpec
from hpsearch.train import TrainingDiverged, evaluate, fit, lr_factor

CPU = torch.device("cpu")
SMALL_CNN = {"blocks": 1, "convs_per_block": 1, "width": 16, "batch_size": 64, "lr": 0.05, "augment": "crop",
             "crop_padding": 1}


def train(params: dict, epochs: int = 4, seed: int = 0):
    d = data.load(DatasetSpec("digits"), CPU)
    torch.manual_seed(seed)
    model = build_model(model_config(params, d.shape, d.num_classes))
    history = fit(model, d, train_config(params, epochs=epochs, seed=seed))
    return model, d, history


def test_short_training_on_digits_reaches_well_above_chance():
    model, d, history = train(SMALL_CNN)
    assert [h.epoch for h in history] == [1, 2, 3, 4]
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].val_accuracy > 0.9  # chance is 0.1
    assert evaluate(model, d, d.test_x, d.test_y) > 0.9


def test_same_seed_and_config_give_identical_numbers():
    first = [(h.train_loss, h.val_accuracy) for h in train(SMALL_CNN, epochs=2)[2]]
    second = [(h.train_loss, h.val_accuracy) for h in train(SMALL_CNN, epochs=2)[2]]
    other_seed = [(h.train_loss, h.val_accuracy) for h in train(SMALL_CNN, epochs=2, seed=1)[2]]
    assert first == second
    assert first != other_seed


def test_absurd_learning_rate_raises_diverged_with_its_reason():
    with pytest.raises(TrainingDiverged, match=r"training loss became (nan|inf) in epoch 1"):
        train({**SMALL_CNN, "batchnorm": False, "lr": 1e6, "optimizer": "sgd", "momentum": 0.0}, epochs=2)


def test_on_epoch_can_stop_training_early():
    class Stop(Exception):
        pass

    seen = []

    def on_epoch(stats):
        seen.append(stats.epoch)
        if stats.epoch == 2:
            raise Stop

    d = data.load(DatasetSpec("digits"), CPU)
    model = build_model(model_config(SMALL_CNN, d.shape, d.num_classes))
    with pytest.raises(Stop):
        fit(model, d, train_config(SMALL_CNN, epochs=5, seed=0), on_epoch)
    assert seen == [1, 2]


@pytest.mark.parametrize("schedule, expected", [
    ("constant", [1.0, 1.0, 1.0, 1.0]),
    ("cosine", [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]),
    ("warmup_linear", [0.5, 1.0, 1.0, 0.5]),
])
def test_learning_rate_schedules(schedule, expected):
    got = [lr_factor(schedule, step, 4, 0.5) for step in range(4)]
    assert got == pytest.approx(expected)
