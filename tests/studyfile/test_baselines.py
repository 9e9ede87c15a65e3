"""The seed reports' baselines as parameter sets: the models they build have the stated parameter counts and
fit their own reports' inputs."""

from __future__ import annotations

import pytest
import torch

from hpsearch.studyfile.baselines import BASELINES, Baseline
from hpsearch.training.models import build_model, count_parameters
from hpsearch.training.space import fit_problem, model_config

STATED = [b for b in BASELINES.values() if b.param_count is not None]


def built_param_count(baseline: Baseline) -> int:
    """Parameters of the baseline built on its report's own input and classes (shapes only, no storage)."""
    with torch.device("meta"):
        return count_parameters(build_model(model_config(baseline.params, baseline.input_shape, baseline.num_classes)))


def test_the_six_stated_counts_are_all_covered():
    assert {b.name: b.param_count for b in STATED}.items() >= {
        "seed001-cnn": 890_410, "seed002-fc": 12_523_266, "seed002-cnn": 81_834, "seed003-tutorial": 62_006,
        "seed004-fc": 29_778_020, "seed000-catsdogs": 26_308_673}.items()


@pytest.mark.parametrize("baseline", STATED, ids=lambda b: b.name)
def test_built_model_matches_the_stated_parameter_count(baseline):
    assert built_param_count(baseline) == baseline.param_count


@pytest.mark.parametrize("baseline", BASELINES.values(), ids=lambda b: b.name)
def test_the_table_holds_each_built_count(baseline):
    """`hpsearch baselines` lists built_count without building (no torch): it must be what the build gives."""
    assert built_param_count(baseline) == baseline.built_count


def test_q9_matches_its_approximate_count_within_ten_percent():
    assert abs(built_param_count(BASELINES["seed002-cnn-q9"]) / 654_454 - 1) < 0.10


@pytest.mark.parametrize("baseline", BASELINES.values(), ids=lambda b: b.name)
def test_every_baseline_fits_its_own_report_input(baseline):
    assert fit_problem(baseline, baseline.input_shape, baseline.num_classes) is None
    assert baseline.config()["schedule"] in ("constant", "cosine")  # hpsearch's defaults never leak in silently
