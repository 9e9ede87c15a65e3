"""ModelConfig -> torch.nn.Module: the families of families.FAMILIES, built from the searched axes
by their functions in BUILDERS.

The CNN is `blocks` conv blocks (each: convs_per_block x [conv, BatchNorm?, activation], then a
pool, then dropout), an optional global pool, then a fully connected head. blocks = 0 gives a
plain fully connected net on the flattened image. ResNet-9 is Page's: a prep conv, three stages
of conv-BN-act-pool with a residual pair of convs after the first and third, a global max pool
and a linear layer whose logits are scaled by 0.125. Other families are torchvision
architectures, built untrained (weights come from `init:`, never from a download) with their
output layer sized for the data.

Two options reach into the CNN and ResNet-9: `whiten` puts a fixed whitening conv before them
(its weights come from the training images: data_init.init_from_data), `dirac_init` starts their
convs as identities. The model knows nothing of training.

A family built by code outside hpsearch (a plugin's, or a study's own: studyfile/plugins.py) is built by
calling its function, build(params, input_shape, num_classes), and checked: a torch.nn.Module whose
logits for one image have one column per class. Whatever goes wrong there is a BuilderFailed that
names the builder: the trial fails with it as its reason, as with an architecture that does not fit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hpsearch.errors import HpsearchError, one_line
from hpsearch.studyfile import plugins
from hpsearch.training import usercode

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
}
POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
GLOBAL_POOLS = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}
RESNET9_LOGIT_SCALE = 0.125  # Page's: the logits of a fresh net are otherwise too large for its lr


class ArchitectureError(HpsearchError):
    """A config that cannot be built for this input, e.g. pooling an 8x8 image five times."""


class BuilderFailed(ArchitectureError):
    """The user's model builder raised, returned no module, or a model whose logits do not fit the classes."""


@dataclass(frozen=True)
class ModelConfig:
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    family: str = "cnn"  # a family plugins.family knows; the fields below are the CNN's unless it takes them too
    widths: tuple[int, ...] = ()  # filters per conv block (ResNet-9: prep conv and its three stages); () = FC net
    convs_per_block: int = 2
    kernel_sizes: tuple[int, ...] = ()  # per block
    padding: str = "same"
    pool: str = "max"
    pool_sizes: tuple[int, ...] = ()  # per block
    batchnorm: bool = True
    bn_momentum: float = 0.1
    conv_dropout: float = 0.0
    conv_dropout_at: str = "all"  # "all" blocks or the "last" one only
    global_pool: str = "none"
    head_widths: tuple[int, ...] = ()
    head_dropout: float = 0.0
    head_dropout_at: str = "all"  # after "all" hidden layers or the "last" one only
    output: str = "softmax"  # "sigmoid": one logit for two classes (binary cross-entropy)
    activation: str = "relu"
    whiten: int = 0  # patch side of a fixed whitening conv before the net; 0: none
    dirac_init: bool = False  # convs start as identities where their shapes allow
    builder_params: Mapping[str, Any] = field(default_factory=dict)  # a builder family's, named without model.

    def __post_init__(self) -> None:
        if plugins.family(self.family) is None:
            raise ArchitectureError(f"unknown family {self.family!r} (allowed: {', '.join(plugins.all_families())}, "
                                    "or a builder's import path): is the plugin that registers it installed?")
        if self.output == "sigmoid" and self.num_classes != 2:
            raise ArchitectureError(f"output 'sigmoid' needs exactly 2 classes, the data has {self.num_classes}")

    @property
    def outputs(self) -> int:
        return 1 if self.output == "sigmoid" else self.num_classes


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network for `cfg`; raises ArchitectureError if the input does not fit it.

    With cfg.whiten = k, the net proper sees the whitening layer's output: 2 * C * k * k channels
    (each whitened direction and its negation, so the activation after it loses nothing), each side
    k - 1 pixels shorter (the patches are taken without padding).
    """
    family = plugins.family(cfg.family)
    channels, height, width = cfg.input_shape
    if family.channels is not None and channels != family.channels:
        raise ArchitectureError(f"{cfg.family} takes {family.channels}-channel images, the data has {channels}")
    shrink = max(cfg.whiten - 1, 0)
    if min(height, width) < family.min_side + shrink:
        with_whiten = f" with whiten {cfg.whiten}" if cfg.whiten else ""
        raise ArchitectureError(f"{cfg.family}{with_whiten} needs images of at least {family.min_side + shrink} "
                                f"pixels a side, the data has {height}x{width}: raise dataset.image_size"
                                + (" or lower whiten" if cfg.whiten else ""))
    stem: list[nn.Module] = []
    if cfg.whiten:
        stem = [Whitening(channels, cfg.whiten), ACTIVATIONS[cfg.activation]()]
        channels, height, width = stem[0].out_channels, height - shrink, width - shrink
    if family.builder is not None:
        model = built_by(family.builder, cfg)
    else:
        model = BUILDERS[cfg.family](cfg, (channels, height, width))
    if stem:
        model = nn.Sequential(*stem, *model)
    if cfg.dirac_init:
        dirac_convs(model)
    return model


class Whitening(nn.Conv2d):
    """A frozen conv whose filters whiten the image's k x k patches: data_init.init_from_data sets them
    from the training images (airbench's first layer). Until then it holds a conv's random init."""

    def __init__(self, channels: int, patch: int) -> None:
        super().__init__(channels, 2 * channels * patch * patch, patch, padding=0, bias=True)
        self.requires_grad_(False)


def dirac_convs(model: nn.Module) -> list[nn.Conv2d]:
    """Make every conv (the whitening layer aside) with at least as many outputs as inputs pass its
    input through unchanged on its first in_channels outputs, as airbench's convs start; the other
    outputs keep their random init. Returns the convs it touched.

    The identity tap sits at the kernel's centre (k // 2): with 'same' padding and an odd kernel the
    first in_channels outputs equal the input; with 'valid' padding they are its centre crop.
    """
    touched = []
    with torch.no_grad():
        for conv in model.modules():
            if type(conv) is nn.Conv2d and conv.groups == 1 and conv.out_channels >= conv.in_channels:
                nn.init.dirac_(conv.weight[:conv.in_channels])
                if conv.bias is not None:
                    conv.bias[:conv.in_channels] = 0.0
                touched.append(conv)
    return touched


# --------------------------------------------------------------------------------------------
# Builders, bound to their families in BUILDERS: builder(cfg, (C, H, W) the net sees) -> the net.


def cnn(cfg: ModelConfig, shape: tuple[int, int, int]) -> nn.Sequential:
    act = ACTIVATIONS[cfg.activation]
    layers: list[nn.Module] = []
    channels, height, width = shape
    for block, filters in enumerate(cfg.widths):
        kernel = cfg.kernel_sizes[block]
        for _ in range(cfg.convs_per_block):
            layers.append(nn.Conv2d(channels, filters, kernel, padding=cfg.padding, bias=not cfg.batchnorm))
            if cfg.padding == "valid":
                height, width = height - kernel + 1, width - kernel + 1
            if cfg.batchnorm:
                layers.append(nn.BatchNorm2d(filters, momentum=cfg.bn_momentum))
            layers.append(act())
            channels = filters
            _check_size(height, width, f"conv block {block + 1}", cfg)
        if cfg.pool != "none" and cfg.pool_sizes[block] > 1:
            size = cfg.pool_sizes[block]
            layers.append(POOLS[cfg.pool](size))
            height, width = height // size, width // size
            _check_size(height, width, f"the pool of block {block + 1}", cfg)
        if cfg.conv_dropout > 0 and (cfg.conv_dropout_at == "all" or block == len(cfg.widths) - 1):
            layers.append(nn.Dropout(cfg.conv_dropout))
    if cfg.widths and cfg.global_pool != "none":
        layers.append(GLOBAL_POOLS[cfg.global_pool](1))
        height = width = 1
    layers.append(nn.Flatten())
    features = channels * height * width
    for i, hidden in enumerate(cfg.head_widths):
        layers += [nn.Linear(features, hidden), act()]
        if cfg.head_dropout > 0 and (cfg.head_dropout_at == "all" or i == len(cfg.head_widths) - 1):
            layers.append(nn.Dropout(cfg.head_dropout))
        features = hidden
    layers.append(nn.Linear(features, cfg.outputs))
    return nn.Sequential(*layers)


def resnet9(cfg: ModelConfig, shape: tuple[int, int, int]) -> nn.Sequential:
    """Page's ResNet-9 (myrtle.ai's DAWNBench entry): 6,573,120 parameters at widths 64/128/256/512
    on CIFAR-10. Its smallest side (8: three pools of 2) is checked by build_model."""
    prep, stage1, stage2, stage3 = cfg.widths

    def conv(c_in: int, c_out: int) -> list[nn.Module]:
        norm = [nn.BatchNorm2d(c_out, momentum=cfg.bn_momentum)] if cfg.batchnorm else []
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not cfg.batchnorm), *norm, ACTIVATIONS[cfg.activation]()]

    def stage(c_in: int, c_out: int, residual: bool) -> nn.Sequential:
        pair = [Residual(*conv(c_out, c_out), *conv(c_out, c_out))] if residual else []
        return nn.Sequential(*conv(c_in, c_out), nn.MaxPool2d(2), *pair)

    return nn.Sequential(
        nn.Sequential(*conv(shape[0], prep)),
        stage(prep, stage1, residual=True),
        stage(stage1, stage2, residual=False),
        stage(stage2, stage3, residual=True),
        nn.AdaptiveMaxPool2d(1),  # Page's MaxPool2d(4) on 32x32 images, for any side
        nn.Flatten(),
        nn.Linear(stage3, cfg.outputs, bias=False),
        Scale(RESNET9_LOGIT_SCALE),
    )


class Residual(nn.Sequential):
    """x + layers(x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


def torchvision_net(cfg: ModelConfig, shape: tuple[int, int, int]) -> nn.Module:
    import torchvision  # only these families need it, and it costs a second to import

    return getattr(torchvision.models, cfg.family)(weights=None, num_classes=cfg.outputs)


# The function that builds each family of families.FAMILIES, keyed the same: that table holds the
# torch-free facts (params.py reads them without loading torch), this one the torch code.
BUILDERS: dict[str, Callable[[ModelConfig, tuple[int, int, int]], nn.Module]] = {
    "cnn": cnn,
    "resnet9": resnet9,
    "resnet18": torchvision_net,
    "squeezenet1_1": torchvision_net,
}


def built_by(path: str, cfg: ModelConfig) -> nn.Module:
    """The model the function at `path` builds for cfg, checked: a module whose logits for one image are one
    per class. Raises BuilderFailed naming the builder and what went wrong."""
    build = usercode.load_function(path, usercode.MODEL_BUILDER).function
    if cfg.output == "sigmoid":
        raise ArchitectureError(f"output sigmoid is for hpsearch's own families; the model builder {path} gives one "
                                "logit per class (softmax)")
    try:
        model = build(dict(cfg.builder_params), tuple(cfg.input_shape), cfg.num_classes)
    except Exception as exc:  # noqa: BLE001 - the user's code: whatever it raises fails the trial, in its words
        raise BuilderFailed(f"model builder {path} raised {one_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise BuilderFailed(f"model builder {path} returned a {type(model).__name__}, not a torch.nn.Module")
    _check_logits(path, model, cfg)
    return model


def _check_logits(path: str, model: nn.Module, cfg: ModelConfig) -> None:
    """A forward pass of one blank image in eval mode, without gradients (nothing trains, no statistic moves), on
    the model's own device: the logits must be (1, num_classes), or every step of the trial would fail."""
    device = next((t.device for t in (*model.parameters(), *model.buffers())), None)
    shape = "x".join(map(str, cfg.input_shape))
    training = model.training
    try:
        with torch.no_grad():
            logits = model.eval()(torch.zeros(1, *cfg.input_shape, device=device))
    except Exception as exc:  # noqa: BLE001 - the user's forward pass
        raise BuilderFailed(f"the model of {path} fails on one {shape} image: {one_line(exc)}") from None
    finally:
        model.train(training)
    got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
    if got != (1, cfg.num_classes):
        raise BuilderFailed(f"the model of {path} gives {got} for one {shape} image, not (1, {cfg.num_classes}): "
                            "it must return one logit per class")


def _check_size(height: int, width: int, where: str, cfg: ModelConfig) -> None:
    if height < 1 or width < 1:
        raise ArchitectureError(
            f"the {cfg.input_shape[1]}x{cfg.input_shape[2]} input shrinks to nothing at {where} "
            f"(blocks={len(cfg.widths)}, padding={cfg.padding}, kernel_sizes={list(cfg.kernel_sizes)}, "
            f"pool_sizes={list(cfg.pool_sizes)}{f', whiten={cfg.whiten}' if cfg.whiten else ''}): "
            f"use fewer blocks, padding 'same' or smaller pools")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
