"""The checks that build a study's parts before a run (search/preflight.py): baselines and fixed architectures that do
not fit the data, samplers built once and quietly; and reading a study file, which builds nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hpsearch.errors import SpecError
from hpsearch.search import preflight
from hpsearch.studyfile.catalog import shipped_study_files
from hpsearch.studyfile.schema import load_spec
from tests.helpers import assert_clean_error, invoke


@pytest.mark.parametrize("dataset, name, why", [
    ("digits", "seed001-cnn", "seed001-cnn does not fit digits: the 8x8 input shrinks to nothing"),
    ("cifar10", "seed000-catsdogs", "seed000-catsdogs does not fit cifar10: output 'sigmoid' needs exactly 2"),
])
def test_a_baseline_that_does_not_fit_is_refused_before_the_run(write_study, dataset, name, why):
    spec = load_spec(write_study(dataset={"name": dataset}, baselines=[name]))  # reading it builds nothing
    with pytest.raises(SpecError) as caught:
        preflight.check(spec)
    assert any(p.startswith("baselines: " + why) for p in caught.value.problems), caught.value.problems


def test_an_unknown_baseline_is_refused_on_load(write_study):
    with pytest.raises(SpecError) as caught:
        load_spec(write_study(baselines=["seed999-magic"]))
    assert caught.value.problems[0].startswith('baselines: unknown baseline "seed999-magic" (allowed: seed001-cnn')


def test_every_problem_the_checks_find_is_reported_at_once_with_the_file(write_study):
    path = write_study(sampler={"name": "tpe", "n_startup": 3}, fixed={"blocks": 8}, baselines=["seed001-cnn"])
    with pytest.raises(SpecError) as caught:
        preflight.check(load_spec(path))
    assert [p.split(":")[0] for p in caught.value.problems] == ["sampler.n_startup", "baselines", "fixed"]
    assert str(caught.value).startswith(f"{path}: sampler.n_startup: unknown key (allowed: ")


@pytest.mark.parametrize("path", shipped_study_files(), ids=lambda p: p.stem)
def test_every_shipped_study_passes_the_checks_a_run_makes(path):
    preflight.check(load_spec(path))


def test_a_study_with_the_qmc_sampler_is_checked_without_a_warning_on_stderr(write_study, recwarn):
    preflight.check(load_spec(write_study(sampler={"name": "qmc", "seed": 0})))  # the check builds it
    assert not recwarn.list


def test_a_fixed_architecture_too_deep_for_the_images_is_refused_before_any_trial(write_study, storage):
    path = write_study(fixed={"blocks": 8})
    assert_clean_error(invoke("run", "--study", str(path), "--storage", storage),
                       f"{path}: fixed: does not fit digits: the 8x8 input shrinks to nothing at the pool of block 4; "
                       "it would fit with blocks 3 or fewer, or with pool none")
    assert not Path(storage.removeprefix("sqlite:///")).exists()


def test_reading_every_shipped_study_imports_neither_torch_nor_optuna():
    """Study files are torch-free by construction: loading one builds no sampler and no model."""
    code = ("import sys\nfrom hpsearch.studyfile.catalog import load_study_spec, shipped_study_files\n"
            "for path in shipped_study_files():\n    load_study_spec(str(path))\n"
            "print(sorted(m for m in ('torch', 'optuna', 'hpsearch.search', 'hpsearch.training') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"
