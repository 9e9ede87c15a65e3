"""The parameterised CNN: exact parameter counts of known nets, shapes, gradients, bad configs."""

from __future__ import annotations

import pytest
import torch

from hpsearch import params as P
from hpsearch.models import ArchitectureError, ModelConfig, build_model, count_parameters
from hpsearch.space import model_config

CIFAR = (3, 32, 32)

# Nets from the seed reports, written as hpsearch parameters; counts as the reports print them.
KNOWN_COUNTS = [
    ("report 001 cnn", CIFAR, 10, {"blocks": 2, "convs_per_block": 2, "widths": [32, 64], "padding": "valid",
                                   "batchnorm": False, "head_widths": [512]}, 890_410),
    ("report 002 fc", CIFAR, 10, {"blocks": 0, "head_widths": [3072, 1000], "activation": "tanh"}, 12_523_266),
    ("report 002 cnn", CIFAR, 10, {"blocks": 3, "convs_per_block": 1, "widths": [32, 64, 120],
                                   "kernel_sizes": [5, 4, 2], "pool_sizes": [2, 3, 2], "padding": "valid",
                                   "batchnorm": False, "head_widths": [120]}, 81_834),
    ("report 003 lenet", CIFAR, 10, {"blocks": 2, "convs_per_block": 1, "widths": [6, 16], "kernel_size": 5,
                                     "padding": "valid", "batchnorm": False, "head_widths": [120, 84]}, 62_006),
    ("report 004 fc", CIFAR, 100, {"blocks": 0, "head_widths": [4096, 4096]}, 29_778_020),
]


@pytest.mark.parametrize("name, shape, classes, params, expected", KNOWN_COUNTS, ids=[k[0] for k in KNOWN_COUNTS])
def test_parameter_counts_match_the_reports(name, shape, classes, params, expected):
    model = build_model(model_config(params, shape, classes))
    assert count_parameters(model) == expected


def test_width_growth_and_global_pool():
    cfg = model_config({"blocks": 3, "width": 16, "width_growth": 2.0, "global_pool": "avg"}, CIFAR, 10)
    assert cfg.widths == (16, 32, 64)
    model = build_model(cfg)
    assert model[-1].in_features == 64  # global pool: the head sees one value per channel


@pytest.mark.parametrize("params", [
    {"blocks": 0, "head_widths": [32]},
    {"blocks": 2, "batchnorm": True, "conv_dropout": 0.2, "activation": "gelu"},
    {"blocks": 3, "pool": "avg", "global_pool": "max", "head_widths": [64, 32], "head_dropout": 0.3},
    {"blocks": 2, "pool": "none", "kernel_size": 5, "activation": "tanh"},
])
def test_forward_shape_and_every_parameter_gets_a_gradient(params):
    torch.manual_seed(0)
    model = build_model(model_config(params, (1, 16, 16), 7))
    out = model(torch.randn(4, 1, 16, 16))
    assert out.shape == (4, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_input_that_shrinks_to_nothing_is_refused_with_the_fix():
    with pytest.raises(ArchitectureError, match="shrinks to nothing.*use fewer blocks"):
        build_model(model_config({"blocks": 4, "padding": "valid"}, (1, 8, 8), 10))


def test_per_block_list_of_the_wrong_length_is_refused():
    with pytest.raises(ArchitectureError, match="widths has 2 entries but blocks is 3"):
        model_config({"blocks": 3, "widths": [8, 16]}, CIFAR, 10)


def test_batchnorm_momentum_reaches_the_layers():
    model = build_model(model_config({"blocks": 1, "bn_momentum": 0.25}, CIFAR, 10))
    norms = [m for m in model if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.25 for m in norms)


def test_config_is_frozen():
    cfg = ModelConfig(input_shape=CIFAR, num_classes=10)
    with pytest.raises(AttributeError):
        cfg.num_classes = 3


@pytest.mark.parametrize("family", ["resnet18", "squeezenet1_1"])
@pytest.mark.parametrize("output, outputs", [("softmax", 3), ("sigmoid", 1)])
def test_torchvision_families_are_built_untrained_for_the_data(family, output, outputs):
    classes = 3 if output == "softmax" else 2
    params = {"family": family, "output": output}
    torch.manual_seed(0)
    model = build_model(model_config(params, (3, 32, 32), classes))
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, outputs) and torch.isfinite(out).all()
    assert "blocks" not in P.complete(params) and "head_widths" not in P.complete(params)  # the CNN's axes are inactive


@pytest.mark.parametrize("family, shape, message", [
    ("squeezenet1_1", (3, 16, 16), "at least 17 pixels a side"),
    ("resnet18", (1, 32, 32), "takes 3-channel images, the data has 1"),
])
def test_torchvision_input_that_does_not_fit_is_refused(family, shape, message):
    with pytest.raises(ArchitectureError, match=message):
        build_model(model_config({"family": family}, shape, 10))
