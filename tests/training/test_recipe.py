"""The one build-whiten-transfer-fit-evaluate sequence, on real digits."""

from __future__ import annotations

import dataclasses

import torch

from hpsearch.studyfile.types import DatasetSpec
from hpsearch.training import devicedata as data
from hpsearch.training import recipe


def test_sigmoid_head_trains_two_classes_with_binary_cross_entropy():
    digits = data.load(DatasetSpec("digits"), torch.device("cpu"))
    keep = lambda y: (y == 0) | (y == 1)
    two = dataclasses.replace(digits, classes=("0", "1"), **{
        f"{split}_{part}": getattr(digits, f"{split}_{part}")[keep(getattr(digits, f"{split}_y"))]
        for split in ("train", "val", "test") for part in ("x", "y")})
    params = {"blocks": 1, "convs_per_block": 1, "width": 8, "output": "sigmoid", "batch_size": 32, "lr": 0.05}
    trained = recipe.train(params, two, epochs=3, seed=0)
    assert trained.model[-1].out_features == 1
    assert trained.val_accuracy > 0.95 and trained.test_accuracy > 0.95
