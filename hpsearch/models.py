"""ModelConfig -> torch.nn.Module: one parameterised CNN whose arguments are the searched axes.

A net is `blocks` conv blocks (each: convs_per_block x [conv, BatchNorm?, activation], then a
pool, then dropout), an optional global pool, then a fully connected head. blocks = 0 gives a
plain fully connected net on the flattened image. The model knows nothing of training.
Other families are torchvision architectures, built untrained (weights come from `init:`, never
from a download) with their output layer sized for the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hpsearch.errors import HpsearchError

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
# torchvision families and the smallest image side each can take (squeezenet's unpadded
# stride-2 conv and three ceil-mode pools leave nothing of a 16-pixel side).
TORCHVISION_MIN_SIDE = {"resnet18": 1, "squeezenet1_1": 17}


class ArchitectureError(HpsearchError):
    """A config that cannot be built for this input, e.g. pooling an 8x8 image five times."""


@dataclass(frozen=True)
class ModelConfig:
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    family: str = "cnn"  # or a torchvision architecture in TORCHVISION_MIN_SIDE; the fields below are the CNN's
    widths: tuple[int, ...] = ()  # filters per conv block; () = fully connected net
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

    def __post_init__(self) -> None:
        if self.output == "sigmoid" and self.num_classes != 2:
            raise ArchitectureError(f"output 'sigmoid' needs exactly 2 classes, the data has {self.num_classes}")


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network for `cfg`; raises ArchitectureError if a layer would shrink the image below 1x1."""
    if cfg.family != "cnn":
        return _torchvision_model(cfg)
    act = ACTIVATIONS[cfg.activation]
    layers: list[nn.Module] = []
    channels, height, width = cfg.input_shape
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
    layers.append(nn.Linear(features, 1 if cfg.output == "sigmoid" else cfg.num_classes))
    return nn.Sequential(*layers)


def _torchvision_model(cfg: ModelConfig) -> nn.Module:
    import torchvision  # only these families need it, and it costs a second to import

    channels, height, width = cfg.input_shape
    if channels != 3:
        raise ArchitectureError(f"{cfg.family} takes 3-channel images, the data has {channels}")
    if min(height, width) < TORCHVISION_MIN_SIDE[cfg.family]:
        raise ArchitectureError(f"{cfg.family} needs images of at least {TORCHVISION_MIN_SIDE[cfg.family]} pixels a "
                                f"side, the data has {height}x{width}: raise dataset.image_size")
    outputs = 1 if cfg.output == "sigmoid" else cfg.num_classes
    return getattr(torchvision.models, cfg.family)(weights=None, num_classes=outputs)


def _check_size(height: int, width: int, where: str, cfg: ModelConfig) -> None:
    if height < 1 or width < 1:
        raise ArchitectureError(
            f"the {cfg.input_shape[1]}x{cfg.input_shape[2]} input shrinks to nothing at {where} "
            f"(blocks={len(cfg.widths)}, padding={cfg.padding}, kernel_sizes={list(cfg.kernel_sizes)}, "
            f"pool_sizes={list(cfg.pool_sizes)}): use fewer blocks, padding 'same' or smaller pools")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
