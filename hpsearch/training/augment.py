"""Training augmentation as a few tensor operations over a whole uint8 batch, on its device.

No per-image Python, no PIL: a batch of random crops is one gather, flips one `where`, cutout one
mask. Every random draw comes from the caller's generator, so a seed fixes the result; the
alternating flip's draws come from a stream of their own, a pure function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Augment:
    flip: bool = False
    crop_padding: int = 0  # 0: no random crop
    cutout_size: int = 0  # 0: no cutout
    alternating_flip: bool = False  # flip each image on alternate epochs (the caller passes `flips`)

    @classmethod
    def from_name(cls, name: str, *, crop_padding: int, cutout_size: int, flip: str) -> Augment:
        """'none', 'flip', 'flip_crop', 'flip_crop_cutout', ... (see params.AUGMENT_OPS), with the parameters of
        each op (those of an op left out have no effect); flip: 'random' or 'alternating'."""
        ops = set(name.split("_")) - {"none"}
        return cls(flip="flip" in ops, crop_padding=crop_padding if "crop" in ops else 0,
                   cutout_size=cutout_size if "cutout" in ops else 0,
                   alternating_flip="flip" in ops and flip == "alternating")

    @property
    def active(self) -> bool:
        return self.flip or self.crop_padding > 0 or self.cutout_size > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator, *,
                 flips: torch.Tensor | None = None) -> torch.Tensor:
        """The augmented batch; `flips` (one bool per image) says which to mirror, else a coin does."""
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, generator)
        if self.flip:
            x = mirror(x, flips) if flips is not None else random_flip(x, generator)
        if self.cutout_size:
            x = cutout(x, self.cutout_size, generator)
        return x


def _uniform_ints(n: int, high: int, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, high, (n,), device=generator.device, generator=generator).to(x.device)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    return mirror(x, _uniform_ints(len(x), 2, x, generator).bool())


def mirror(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images whose entry of `flips` is true."""
    return torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)


_FLIP_STREAM = 0x5F11F  # added to the seed: the data-order generator draws from the seed's own stream


def alternating_flips(order: torch.Tensor, epoch: int, seed: int) -> torch.Tensor:
    """Which images of an epoch to mirror, in the epoch's `order` (a permutation of the split), for
    the derandomised flip of airbench94: in epoch 1 each image is mirrored or not by a seeded coin,
    then its flip toggles every epoch, so over any two epochs every image is seen both ways. A pure
    function of (order, epoch, seed): a resumed run needs no state for it."""
    coins = torch.Generator().manual_seed(seed + _FLIP_STREAM)
    first = torch.randint(0, 2, (len(order),), generator=coins).bool().to(order.device)
    return first[order] ^ (epoch % 2 == 0)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` pixels, then cut each image back to its size at a random offset."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = _uniform_ints(n, 2 * padding + 1, x, generator)
    dx = _uniform_ints(n, 2 * padding + 1, x, generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols].contiguous(memory_format=_layout(x))


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one size x size square per image, centred anywhere (it may overhang the border)."""
    n, _, h, w = x.shape
    cy = _uniform_ints(n, h, x, generator)[:, None]
    cx = _uniform_ints(n, w, x, generator)[:, None]
    top, left = cy - size // 2, cx - size // 2
    ys, xs = torch.arange(h, device=x.device)[None, :], torch.arange(w, device=x.device)[None, :]
    inside_rows = (ys >= top) & (ys < top + size)  # (N, H)
    inside_cols = (xs >= left) & (xs < left + size)  # (N, W)
    mask = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]  # (N, 1, H, W)
    return x.masked_fill(mask, 0)


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1 \
        else torch.contiguous_format
