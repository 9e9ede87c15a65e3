"""The network families a study can pick (`family:`): one row each, so the next family is one entry.

A row says what the rest of hpsearch must know of a family without building it: the images it can
take and the model parameters it takes. A model parameter that the trial's family does not take is
inactive (params.resolve): neither sampled nor stored. This module imports nothing heavy, so
listing parameters never loads torch; the function that builds each family is bound to its name in
hpsearch.training.models.BUILDERS, a table with the same keys as this one.

A family built by code outside hpsearch (an installed plugin's, registered through an entry point, or a
study's own, named by its import path: studyfile/plugins.py finds both) is a row too, one that names the
function that builds it (`builder`) and the parameters that function takes (`builder_params`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpsearch.studyfile.param import Param

# A builder's own parameters are named model.NAME in a study file and a trial's params, so that they never clash
# with hpsearch's; the builder gets them as NAME.
BUILDER_PREFIX = "model."

# The CNN's and ResNet-9's shared axes; a family's row names every parameter it takes.
_CONV_INIT = ("whiten", "dirac_init")
_BATCHNORM = ("batchnorm", "bn_momentum")


@dataclass(frozen=True)
class Family:
    name: str
    about: str  # what it is, for `hpsearch params`
    params: frozenset[str] = frozenset()  # the model parameters it takes (PARAMS names)
    defaults: Mapping[str, Any] = field(default_factory=dict)  # its own defaults where they differ from PARAMS'
    stages: int | None = None  # widths it has (ModelConfig.widths); None: the `blocks` parameter decides
    min_side: int = 1  # the smallest image side it can take, before any whitening layer shrinks it
    channels: int | None = None  # the image channels it takes; None: any
    # Built by code outside hpsearch: the import path of its function, build(params, input_shape, num_classes)
    # -> nn.Module (training/models.py calls it); None: hpsearch's own (BUILDERS).
    builder: str | None = None
    # The parameters that function takes, as Param rows named without the prefix; None: whatever model.NAME the
    # study file gives, typed by its distribution or value (a study's own builder, declared nowhere).
    builder_params: tuple[Param, ...] | None = ()


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("cnn", "hpsearch's parameterised CNN", frozenset((
        "blocks", "convs_per_block", "widths", "width", "width_growth", "width_multiplier", "kernel_size",
        "kernel_sizes", "padding", "pool", "pool_size", "pool_sizes", *_BATCHNORM, "conv_dropout",
        "conv_dropout_at", "global_pool", "head_widths", "head_dropout", "head_dropout_at", "activation",
        *_CONV_INIT))),
    # Page's DAWNBench net (myrtle.ai, "How to train your ResNet"): three pools of 2 leave 1x1 of 8x8.
    Family("resnet9", "Page's ResNet-9: widths width x (1, 2, 4, 8), residual pairs after stages 1 "
           "and 3, logits x 0.125", frozenset(("width", "width_multiplier", *_BATCHNORM, "activation",
                                              *_CONV_INIT)),
           defaults={"width": 64}, stages=4, min_side=8),
    # torchvision's, untrained (weights come from init:); squeezenet's unpadded stride-2 conv and three
    # ceil-mode pools leave nothing of a 16-pixel side.
    Family("resnet18", "torchvision's, built untrained", channels=3),
    Family("squeezenet1_1", "torchvision's, built untrained", min_side=17, channels=3),
)}

# Every parameter that some family takes: each is inactive for the families that do not.
MODEL_PARAMS: frozenset[str] = frozenset().union(*(f.params for f in FAMILIES.values()))
