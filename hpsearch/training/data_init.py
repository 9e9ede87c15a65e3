"""Layers whose starting weights come from the training images: set once, after the model is built.

models.py knows nothing of data, so objective.py and export.py call init_from_data right after
build_model, before any trained weights (init:) or checkpoint are loaded over it. Today that is the
`whiten` layer (models.Whitening), as in airbench: a conv whose filters map each k x k patch to
its coordinates in the patches' principal directions, divided by their spread, so that the first
trained layer sees decorrelated, unit-variance inputs from step one. The statistics are computed
on the CPU in float64, so a seed and a config give the same filters on every device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from hpsearch.training.models import Whitening

if TYPE_CHECKING:
    from hpsearch.training.devicedata import DeviceData

WHITEN_PATCHES = 5_000_000  # patches the statistics are taken over: airbench's 5,000 CIFAR-10 images at 2x2
WHITEN_EPS = 5e-4  # added to each eigenvalue (airbench's): near-constant directions are not blown up into noise
_CHUNK_PATCHES = 250_000  # float64 patches unfolded at a time (50 MB at 3x3 RGB)


def init_from_data(model: nn.Module, data: DeviceData) -> None:
    """Fit every whitening layer of `model` to the first training images (the split's own order)."""
    for layer in model.modules():
        if isinstance(layer, Whitening):
            patch = layer.kernel_size[0]
            _, height, width = data.shape
            count = max(1, min(len(data.train_x), WHITEN_PATCHES // ((height - patch + 1) * (width - patch + 1))))
            weight, bias = whitening_filters(data.normalize(data.train_x[:count]), patch)
            with torch.no_grad():
                layer.weight.copy_(weight)
                layer.bias.copy_(bias)


def whitening_filters(images: torch.Tensor, patch: int, eps: float = WHITEN_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a `patch` x `patch` conv without padding that maps each patch x of `images`
    (N, C, H, W) to z = D^-1/2 V^T (x - mean) and to -z: V, D the eigenvectors and eigenvalues (+ eps)
    of the patches' covariance, largest first. Over these images' patches, z has (nearly) the identity
    covariance and zero mean. float64, on the CPU."""
    channels = images.shape[1]
    mean, covariance = _patch_statistics(images, patch)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0).clamp_min(0.0), eigenvectors.flip(1)
    # An eigenvector's sign is the solver's choice: make each one's largest entry positive, so the
    # filters do not depend on the LAPACK build.
    signs = torch.sign(eigenvectors.gather(0, eigenvectors.abs().argmax(0, keepdim=True)))
    filters = (eigenvectors * signs).T / (eigenvalues + eps).sqrt()[:, None]  # one row per direction
    bias = -(filters @ mean)  # negated after the product, so -z is exact whatever order BLAS sums in
    return torch.cat((filters, -filters)).view(-1, channels, patch, patch), torch.cat((bias, -bias))


def _patch_statistics(images: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (float64) of every `patch` x `patch` patch of `images`, flattened in the
    order of a conv weight's (C, kh, kw)."""
    n, channels, height, width = images.shape
    per_image = (height - patch + 1) * (width - patch + 1)
    size = channels * patch * patch
    total = torch.zeros(size, dtype=torch.float64)
    products = torch.zeros(size, size, dtype=torch.float64)
    step = max(1, _CHUNK_PATCHES // per_image)
    for start in range(0, n, step):
        x = images[start:start + step].to("cpu", torch.float64)
        patches = x.unfold(2, patch, 1).unfold(3, patch, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, size)
        total += patches.sum(0)
        products += patches.T @ patches
    count = n * per_image
    mean = total / count
    return mean, products / count - torch.outer(mean, mean)
