"""The tables of pluggable components: each row names things that exist, and a second table keyed
by the same names (the torch side of a torch-free table) has a row for each."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.errors import SpecError
from hpsearch.search.samplers import (
    make_pruner,
    make_sampler,
    option_names,
    optuna_class,
)
from hpsearch.studyfile.components import PRUNERS, SAMPLERS, Sampler
from hpsearch.studyfile.families import FAMILIES
from hpsearch.studyfile.schema import load_spec
from hpsearch.studyfile.types import DATASETS
from hpsearch.training.datasets import READERS
from hpsearch.training.models import BUILDERS


@pytest.mark.parametrize("row", SAMPLERS.values(), ids=lambda r: r.name)
def test_a_sampler_row_names_an_optuna_sampler_and_options_it_takes(row):
    cls = optuna_class(row)
    assert issubclass(cls, optuna.samplers.BaseSampler) and set(row.least) <= option_names(cls)


@pytest.mark.parametrize("row", PRUNERS.values(), ids=lambda r: r.name)
def test_a_pruner_row_names_an_optuna_pruner_and_arguments_it_takes(row):
    cls = optuna_class(row)
    named = {*row.least, *row.defaults, row.min_epochs_argument, row.epochs_argument} - {None}
    assert issubclass(cls, optuna.pruners.BasePruner) and named <= option_names(cls)


def test_a_new_sampler_is_one_row(write_study, monkeypatch):
    monkeypatch.setitem(SAMPLERS, "brute", Sampler("brute", "optuna.samplers.BruteForceSampler"))
    spec = load_spec(write_study(sampler={"name": "brute", "avoid_premature_stop": True}))
    assert isinstance(make_sampler(spec.sampler.name, spec.sampler.options, seed=3),
                      optuna.samplers.BruteForceSampler)


def test_an_unknown_sampler_or_pruner_is_refused_on_load(write_study):
    """The names are checked against the table on load, which builds nothing (the options, search/preflight.py)."""
    with pytest.raises(SpecError) as caught:
        load_spec(write_study(sampler={"name": "genetic"}, pruner="early"))
    assert caught.value.problems == [
        'sampler.name: unknown sampler "genetic" (allowed: tpe, random, cmaes, gp, qmc, nsga2)',
        'pruner.name: unknown pruner "early" (allowed: none, median, percentile, successive_halving, hyperband)']


def test_a_pruner_row_places_min_epochs_and_the_epochs():
    hyperband = make_pruner("hyperband", {"min_epochs": 2}, epochs=9)
    assert (hyperband._min_resource, hyperband._max_resource) == (2, 9)
    assert make_pruner("percentile", {}, epochs=9)._percentile == 50.0
    assert isinstance(make_pruner("none", {"min_epochs": 2}, epochs=9), optuna.pruners.NopPruner)


def test_the_two_objective_refusal_lists_the_samplers_the_table_allows(write_study):
    with pytest.raises(SpecError) as caught:
        load_spec(write_study(objectives=["val_accuracy", "params"], sampler={"name": "cmaes"}))
    assert caught.value.problems[0].endswith("(allowed with two: tpe, random, gp, qmc, nsga2)")


def test_every_family_has_a_builder_and_every_builder_a_family():
    assert tuple(BUILDERS) == tuple(FAMILIES)


def test_every_dataset_a_study_may_name_has_a_reader():
    assert tuple(READERS) == tuple(DATASETS)
