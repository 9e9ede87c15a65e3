"""The table of network families: one row drives which parameters a trial has, their defaults and the build."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.studyfile import params as P
from hpsearch.studyfile.families import FAMILIES, MODEL_PARAMS, Family
from hpsearch.training.models import BUILDERS, ArchitectureError, build_model, cnn
from hpsearch.training.space import model_config


def test_the_registry_is_what_params_offers_and_each_familys_parameters_are_real():
    assert P.BY_NAME["family"].choices == tuple(FAMILIES)
    assert MODEL_PARAMS <= P.BY_NAME.keys()
    result = CliRunner().invoke(main, ["params"])
    assert all(name in result.output for name in FAMILIES)
    assert "default 32 (resnet9: 64)" in result.output and "families: cnn, resnet9" in result.output


def test_a_new_family_is_one_entry(monkeypatch):
    """A row and its builder drive which parameters a trial has, their defaults, the config and the build."""
    tiny = Family("tiny", "a one-block CNN", frozenset({"blocks", "width", "kernel_size", "pool", "pool_size"}),
                  defaults={"width": 3, "blocks": 1}, min_side=4)
    monkeypatch.setitem(FAMILIES, "tiny", tiny)
    monkeypatch.setitem(BUILDERS, "tiny", cnn)
    params = P.complete({"family": "tiny"})
    assert {k for k in params if k in MODEL_PARAMS} == {"blocks", "width", "kernel_size", "pool", "pool_size"}
    assert (params["width"], params["blocks"]) == (3, 1)
    model = build_model(model_config(params, (1, 8, 8), 10))
    assert [m.out_channels for m in model if isinstance(m, torch.nn.Conv2d)] == [3, 3]
    with pytest.raises(ArchitectureError, match="tiny needs images of at least 4 pixels a side"):
        build_model(model_config(params, (1, 3, 3), 10))
