"""Whole-batch augmentation: shapes and dtype kept, seeded, and each op doing what it says."""

from __future__ import annotations

import torch

from hpsearch.training.augment import Augment, cutout, random_crop, random_flip


def batch(n: int = 64) -> torch.Tensor:
    return torch.randint(1, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_flip_mirrors_about_half_the_images():
    x = batch()
    y = random_flip(x, gen())
    flipped = [torch.equal(a, b.flip(2)) and not torch.equal(a, b) for a, b in zip(y, x)]
    kept = [torch.equal(a, b) for a, b in zip(y, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48


def test_crop_shifts_each_image_within_the_padding():
    x = batch()
    y = random_crop(x, 2, gen())
    assert y.shape == x.shape and y.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for image, source in zip(y, padded):
        assert any(torch.equal(image, source[:, dy:dy + 8, dx:dx + 8]) for dy in range(5) for dx in range(5))
    assert not torch.equal(y, x)


def test_cutout_zeroes_one_square_per_image():
    x = batch()
    y = cutout(x, 4, gen())
    zeros = (y == 0).all(dim=1).flatten(1).sum(dim=1)  # pixels zeroed in all channels
    assert zeros.min() >= 4 and zeros.max() <= 16  # a 4x4 square, clipped at the border


def test_same_seed_same_augmentation():
    aug = Augment.from_name("flip_crop_cutout", crop_padding=2, cutout_size=3, flip="random")
    assert torch.equal(aug(batch(), gen(5)), aug(batch(), gen(5)))
    assert not torch.equal(aug(batch(), gen(5)), aug(batch(), gen(6)))


def test_none_is_inactive():
    assert not Augment.from_name("none", crop_padding=4, cutout_size=8, flip="random").active
    assert Augment.from_name("cutout", crop_padding=4, cutout_size=3, flip="random") == Augment(cutout_size=3)
