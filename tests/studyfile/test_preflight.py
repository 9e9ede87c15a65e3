"""The checks on load that build components: baselines and fixed architectures that do not fit the data, samplers
built once and quietly."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.errors import SpecError
from hpsearch.studyfile.schema import load_spec
from tests.helpers import assert_clean_error, invoke


@pytest.mark.parametrize("dataset, name, why", [
    ("digits", "seed001-cnn", "seed001-cnn does not fit digits: the 8x8 input shrinks to nothing"),
    ("cifar10", "seed000-catsdogs", "seed000-catsdogs does not fit cifar10: output 'sigmoid' needs exactly 2"),
    ("digits", "seed999-magic", 'unknown baseline "seed999-magic" (allowed: seed001-cnn'),
])
def test_a_baseline_that_does_not_fit_is_refused_on_load(write_study, dataset, name, why):
    with pytest.raises(SpecError) as caught:
        load_spec(write_study(dataset={"name": dataset}, baselines=[name]))
    assert any(p.startswith("baselines: " + why) for p in caught.value.problems), caught.value.problems


def test_a_study_with_the_qmc_sampler_loads_without_a_warning_on_stderr(write_study, recwarn):
    assert load_spec(write_study(sampler={"name": "qmc", "seed": 0})).sampler.name == "qmc"  # the check builds it
    assert not recwarn.list


def test_a_fixed_architecture_too_deep_for_the_images_is_refused_before_any_trial(write_study, storage):
    path = write_study(fixed={"blocks": 8})
    assert_clean_error(invoke("run", "--study", str(path), "--storage", storage),
                       f"{path}: fixed: does not fit digits: the 8x8 input shrinks to nothing at the pool of block 4; "
                       "it would fit with blocks 3 or fewer, or with pool none")
    assert not Path(storage.removeprefix("sqlite:///")).exists()
