"""A dataset's three splits on the device: digits split fixed, stratified and disjoint, loaded once, normalised
with training statistics; a reader for every dataset a study may name."""

from __future__ import annotations

from pathlib import Path

import torch

from hpsearch.studyfile.types import DatasetSpec
from hpsearch.training import datasets
from hpsearch.training import devicedata as data

CPU = torch.device("cpu")


def test_digits_split_is_fixed_stratified_and_disjoint():
    d = data.load(DatasetSpec("digits", validation=0.15, test=0.2), CPU)
    total = len(d.train_y) + len(d.val_y) + len(d.test_y)
    assert total == 1797 and d.shape == (1, 8, 8) and d.num_classes == 10
    assert d.train_x.dtype == torch.uint8 and d.train_x.max() == 255
    assert torch.bincount(d.val_y).min() >= 20  # stratified: every class is represented
    again = data._split_to_device(DatasetSpec("digits", validation=0.15, test=0.2),
                                  datasets._read_digits(None, Path()), CPU)
    assert torch.equal(again.val_x, d.val_x) and torch.equal(again.test_y, d.test_y)
    rows = lambda x: {bytes(r) for r in x.flatten(1).numpy()}
    assert not rows(d.val_x) & rows(d.test_x) - rows(d.train_x)  # no image moves between splits


def test_dataset_is_loaded_once_per_process():
    spec = DatasetSpec("digits")
    assert data.load(spec, CPU) is data.load(spec, CPU)


def test_normalize_uses_training_statistics():
    d = data.load(DatasetSpec("digits"), CPU)
    x = d.normalize(d.train_x)
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-2
