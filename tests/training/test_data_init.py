"""The whitening layer: its filters come from the training patches, whiten them, and stay frozen."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hpsearch.studyfile.types import DatasetSpec
from hpsearch.training import devicedata as data
from hpsearch.training.data_init import WHITEN_EPS, init_from_data, whitening_filters
from hpsearch.training.models import Whitening, build_model
from hpsearch.training.space import model_config, train_config
from hpsearch.training.train import fit, make_optimizer

CPU = torch.device("cpu")


def covariance(outputs: torch.Tensor) -> torch.Tensor:
    """Channel covariance of a conv's outputs over every position of every image."""
    flat = outputs.double().permute(0, 2, 3, 1).reshape(-1, outputs.shape[1])
    return torch.cov(flat.T, correction=0)


def correlated_images(seed: int = 0) -> torch.Tensor:
    """Images whose channels and neighbouring pixels are strongly correlated, as in photos."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, 12, 12, generator=g)
    x = torch.einsum("dc,nchw->ndhw", torch.tensor([[1.0, 0.9, 0.8], [0.0, 0.5, 0.4], [0.0, 0.0, 0.3]]), x)
    return x + 0.8 * x.roll(1, dims=2) + 0.6 * x.roll(1, dims=3) + 2.0


def test_whitening_filters_map_the_patches_to_unit_covariance_and_zero_mean():
    images = correlated_images()
    patches = F.unfold(images.double(), 3)  # (N, C*3*3, positions): the patches a 3x3 conv sees
    before = torch.cov(patches.permute(0, 2, 1).reshape(-1, 27).T, correction=0)
    assert (before - torch.eye(27, dtype=torch.float64)).abs().max() > 0.5  # far from white

    weight, bias = whitening_filters(images, 3)
    assert weight.shape == (54, 3, 3, 3) and weight.dtype == torch.float64
    out = F.conv2d(images.double(), weight, bias)
    white, negated = out[:, :27], out[:, 27:]
    assert torch.equal(weight[27:], -weight[:27]) and torch.equal(bias[27:], -bias[:27])
    assert torch.allclose(negated, -white, rtol=0, atol=1e-12)  # conv sums the two halves in other orders
    assert torch.allclose(covariance(white), torch.eye(27, dtype=torch.float64), atol=0.03)
    eigenvalues = torch.linalg.eigvalsh(before).flip(0)  # largest direction first, as airbench orders them
    assert torch.allclose(covariance(white), torch.diag(eigenvalues / (eigenvalues + WHITEN_EPS)), atol=1e-9)
    assert white.mean(dim=(0, 2, 3)).abs().max() < 1e-9


def test_whitening_filters_are_the_same_each_time_and_pick_their_signs():
    images = correlated_images(seed=1)
    first, again = whitening_filters(images, 2), whitening_filters(images, 2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    flat = first[0][:12].reshape(12, -1)
    assert torch.all(flat.gather(1, flat.abs().argmax(1, keepdim=True)) > 0)  # each filter's largest tap positive


def test_init_from_data_fits_the_whitening_layer_to_the_training_split_and_training_leaves_it_alone():
    d = data.load(DatasetSpec("digits"), CPU)
    params = {"blocks": 1, "convs_per_block": 1, "width": 8, "whiten": 2, "batch_size": 64}
    torch.manual_seed(0)
    model = build_model(model_config(params, d.shape, d.num_classes))
    layer = model[0]
    assert isinstance(layer, Whitening) and layer.out_channels == 2 * 1 * 2 * 2
    assert not any(p.requires_grad for p in layer.parameters())
    init_from_data(model, d)

    train_images = d.normalize(d.train_x)
    with torch.no_grad():
        out = layer(train_images)[:, :4]
    eigenvalues = torch.linalg.eigvalsh(covariance(F.conv2d(train_images, torch.eye(4).view(4, 1, 2, 2))))
    expected = torch.diag((eigenvalues / (eigenvalues + WHITEN_EPS)).flip(0))  # 1 but for the eps
    assert torch.allclose(covariance(out), expected, atol=1e-4) and expected.diagonal().min() > 0.99

    frozen = [t.clone() for t in layer.parameters()]
    optimized = {id(p) for group in make_optimizer(model, train_config(params, epochs=1, seed=0)).param_groups
                 for p in group["params"]}
    assert not optimized & {id(p) for p in layer.parameters()}
    fit(model, d, train_config(params, epochs=1, seed=0))
    assert all(torch.equal(a, b) for a, b in zip(frozen, layer.parameters()))


def test_a_model_without_whitening_is_left_as_built():
    d = data.load(DatasetSpec("digits"), CPU)
    torch.manual_seed(0)
    model = build_model(model_config({"blocks": 1, "width": 4}, d.shape, d.num_classes))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    init_from_data(model, d)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
