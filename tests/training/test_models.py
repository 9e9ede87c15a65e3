"""The families: exact parameter counts of known nets, shapes, gradients, bad configs; dirac_init; the registry."""

from __future__ import annotations

import math

import pytest
import torch

from hpsearch.studyfile import params as P
from hpsearch.studyfile.families import FAMILIES
from hpsearch.training.models import ArchitectureError, ModelConfig, build_model, count_parameters
from hpsearch.training.space import model_config, train_config

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


# --- ResNet-9 -------------------------------------------------------------------------------

def test_resnet9_has_pages_parameter_count_and_its_widths_scale():
    model = build_model(model_config({"family": "resnet9"}, CIFAR, 10))
    assert count_parameters(model) == 6_573_120  # Page's ResNet-9: convs without bias, BatchNorm, linear 512->10
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 64), (64, 128), (128, 128), (128, 128), (128, 256), (256, 512), (512, 512), (512, 512)]
    assert model_config({"family": "resnet9", "width_multiplier": 0.5}, CIFAR, 10).widths == (32, 64, 128, 256)
    assert model_config({"family": "resnet9", "width": 24, "width_multiplier": 1.5}, CIFAR, 10).widths == (
        36, 72, 144, 288)


def test_resnet9_logits_are_scaled_and_its_residual_adds():
    torch.manual_seed(0)
    model = build_model(model_config({"family": "resnet9", "width": 8}, CIFAR, 10)).eval()
    x = torch.randn(2, *CIFAR)
    assert torch.allclose(model(x), model[:-1](x) * 0.125)
    residual = model[1][-1]
    features = model[1][:-1](model[0](x))
    assert torch.allclose(residual(features), features + torch.nn.Sequential(*residual)(features))


def test_resnet9_honours_batchnorm_momentum_and_activation():
    model = build_model(model_config({"family": "resnet9", "width": 8, "bn_momentum": 0.3, "activation": "gelu"},
                                     CIFAR, 10))
    assert {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.3}
    assert sum(isinstance(m, torch.nn.GELU) for m in model.modules()) == 8 and not any(
        isinstance(m, torch.nn.ReLU) for m in model.modules())
    plain = build_model(model_config({"family": "resnet9", "width": 8, "batchnorm": False}, CIFAR, 10))
    convs = [m for m in plain.modules() if isinstance(m, torch.nn.Conv2d)]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules()) and all(c.bias is not None
                                                                                          for c in convs)


def test_resnet9_takes_8x8_digits_and_refuses_what_three_pools_leave_nothing_of():
    out = build_model(model_config({"family": "resnet9", "width": 4}, (1, 8, 8), 10))(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 10)
    with pytest.raises(ArchitectureError, match=r"^resnet9 needs images of at least 8 pixels a side, the data has "
                                                r"7x7: raise dataset.image_size$"):
        build_model(model_config({"family": "resnet9"}, (1, 7, 7), 10))
    with pytest.raises(ArchitectureError, match=r"^resnet9 with whiten 2 needs images of at least 9 pixels a side, "
                                                r"the data has 8x8: raise dataset.image_size or lower whiten$"):
        build_model(model_config({"family": "resnet9", "whiten": 2}, (1, 8, 8), 10))


def test_resnet9_trains_an_epoch_on_cifar_shaped_images_the_same_twice(image_folder, tmp_path):
    from hpsearch.studyfile.types import DatasetSpec
    from hpsearch.training import devicedata as data
    from hpsearch.training.data_init import init_from_data
    from hpsearch.training.train import fit

    image_folder(tmp_path / "pets", per_class=16)
    d = data.load(DatasetSpec("imagefolder", path=str(tmp_path / "pets"), image_size=(32, 32)), torch.device("cpu"))
    params = {"family": "resnet9", "width": 8, "whiten": 2, "dirac_init": True, "batch_size": 8, "lr": 0.05}

    def train():
        torch.manual_seed(0)
        model = build_model(model_config(params, d.shape, d.num_classes))
        init_from_data(model, d)
        whitening = model[0].weight.clone()
        history = fit(model, d, train_config(params, epochs=1, seed=0))
        assert torch.equal(model[0].weight, whitening)  # frozen
        return model, history[0]

    (model, first), (_, again) = train(), train()
    assert d.shape == CIFAR and math.isfinite(first.train_loss)
    assert (first.train_loss, first.val_accuracy) == (again.train_loss, again.val_accuracy)
    moved = [p for p in model.parameters() if p.requires_grad]
    assert moved and all(p.grad is not None for p in moved)


# --- dirac_init -----------------------------------------------------------------------------

def test_dirac_init_makes_a_conv_the_identity_where_its_shape_allows():
    torch.manual_seed(0)
    model = build_model(model_config({"blocks": 2, "convs_per_block": 1, "widths": [6, 4], "batchnorm": False,
                                      "dirac_init": True}, CIFAR, 10))
    grow, shrink = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(grow(x)[:, :3], x)  # 3 -> 6: the first three outputs pass the input through
    assert not torch.allclose(grow(x)[:, 3:], torch.zeros(2, 3, 32, 32))  # the rest keep their random init
    torch.manual_seed(0)
    plain = build_model(model_config({"blocks": 2, "convs_per_block": 1, "widths": [6, 4], "batchnorm": False},
                                     CIFAR, 10))
    assert torch.equal(shrink.weight, plain[3].weight)  # 6 -> 4: no identity to start from, untouched
    assert torch.equal(grow.weight[3:], plain[0].weight[3:])  # dirac_ draws no random numbers


def test_dirac_init_touches_every_conv_of_resnet9_but_the_whitening_one():
    params = {"family": "resnet9", "width": 32, "whiten": 2}
    torch.manual_seed(0)
    model = build_model(model_config({**params, "dirac_init": True}, CIFAR, 10))
    torch.manual_seed(0)
    plain = build_model(model_config(params, CIFAR, 10))
    x = torch.randn(1, 256, 4, 4)
    convs = [m for m in model.modules() if type(m) is torch.nn.Conv2d]
    assert [c.in_channels for c in convs] == [24, 32, 64, 64, 64, 128, 256, 256]  # the prep conv sees 2 x 3 x 2 x 2
    assert all(torch.allclose(c(x[:, :c.in_channels])[:, :c.in_channels], x[:, :c.in_channels]) for c in convs)
    assert torch.equal(model[0].weight, plain[0].weight)  # the whitening layer: its filters come from the data


# --- the family registry ---------------------------------------------------------------------

@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_builds_for_its_smallest_input_and_every_trainable_weight_gets_a_gradient(name):
    family = FAMILIES[name]
    shape = (family.channels or 3, max(family.min_side, 8), max(family.min_side, 8))
    torch.manual_seed(0)
    model = build_model(model_config({"family": name}, shape, 5))
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_an_unknown_family_names_the_known_ones():
    with pytest.raises(ArchitectureError, match="unknown family 'vgg' \\(allowed: cnn, resnet9, resnet18"):
        ModelConfig(CIFAR, 10, family="vgg")


def test_defaults_leave_the_cnn_as_it_was():
    """whiten 0, dirac_init false and width_multiplier 1 add nothing and draw no random numbers."""
    params = {"blocks": 2, "width": 8, "width_growth": 1.5}
    torch.manual_seed(0)
    before = build_model(model_config(params, CIFAR, 10)).state_dict()
    torch.manual_seed(0)
    after = build_model(model_config({**params, "whiten": 0, "dirac_init": False, "width_multiplier": 1.0},
                                     CIFAR, 10)).state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model_config(params, CIFAR, 10).widths == (8, 12)
