"""Samplers and pruners by name: Optuna's own classes, the study file's options, min_epochs where each pruner wants it."""

from __future__ import annotations

import re

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.results import ranking
from hpsearch.search.run import RunOptions, run
from hpsearch.search.samplers import SAMPLERS, make_pruner, make_sampler, optuna_class, option_names
from hpsearch.studyfile.limits import within_limits
from hpsearch.studyfile.schema import load_spec
from tests.helpers import FRONT_DIGITS


def test_nsga2_searches_a_front_and_reads_the_limits(write_study, storage):
    """Optuna's NSGA-II by name: after its random first population it breeds the next from the front."""
    spec = load_spec(write_study(**{**FRONT_DIGITS, "budget": {"epochs": 2, "trials": 6}, "limits": {"params": 2000},
                                    "sampler": {"name": "nsga2", "seed": 0, "population_size": 3}}))
    study = run(spec, storage, RunOptions(device="cpu"))
    assert type(study.sampler).__name__ == "NSGAIISampler" and len(study.trials) == 6
    assert all(set(t.constraints) == {"params"} for t in study.trials)
    assert ranking.front(study.trials) and all(within_limits(t) for t in ranking.front(study.trials))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_is_optuna_s_own_class_and_draws_from_its_seed(name):
    def first_draw(seed: int) -> tuple[float, float]:
        trial = optuna.create_study(sampler=make_sampler(name, {}, seed)).ask()
        return trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)

    assert type(make_sampler(name, {}, 7)) is optuna_class(SAMPLERS[name])
    assert first_draw(7) == first_draw(7) != first_draw(8)


def pruned_at(pruner: optuna.pruners.BasePruner, trials: int = 6, epochs: int = 8) -> list[int | None]:
    """Each trial's epoch of pruning (None: completed) when trial k reports 0.9 - k/10 at every epoch."""
    study = optuna.create_study(study_name="pruned", direction="maximize", pruner=pruner)  # Hyperband hashes the name
    stopped = []
    for k in range(trials):
        trial, value = study.ask(), 0.9 - k / 10
        stopped.append(next((epoch for epoch in range(1, epochs + 1)
                             if trial.report(value, epoch) or trial.should_prune()), None))
        study.tell(trial, value if stopped[-1] is None else None,
                   state=TrialState.COMPLETE if stopped[-1] is None else TrialState.PRUNED)
    return stopped


@pytest.mark.parametrize("name, options", [("median", {"n_startup_trials": 0}), ("percentile", {"n_startup_trials": 0}),
                                           ("successive_halving", {}), ("hyperband", {})])
def test_min_epochs_is_each_pruner_s_own_warm_up(name, options):
    """One spelling in the study file, four arguments in Optuna: none prunes before epoch min_epochs."""
    for least in (1, 2, 3):
        stopped = pruned_at(make_pruner(name, {**options, "min_epochs": least}, 8))
        assert min(epoch for epoch in stopped if epoch) == least, stopped


def test_percentile_without_a_percentile_is_the_median_and_none_never_prunes():
    median = pruned_at(make_pruner("median", {"n_startup_trials": 2}, 8), trials=8)
    assert pruned_at(make_pruner("percentile", {"n_startup_trials": 2}, 8), trials=8) == median
    assert any(median) and pruned_at(make_pruner("none", {}, 8), trials=8) == [None] * 8


@pytest.mark.parametrize("build, says", [
    (lambda: make_sampler("tpe", {"n_ei_candidates": True}, None), "n_ei_candidates must be a whole number >= 1, got True"),
    (lambda: make_sampler("tpe", {"n_ei_candidates": 0}, None), "n_ei_candidates must be a whole number >= 1, got 0"),
    (lambda: make_pruner("hyperband", {"reduction_factor": 1.5}, 8),
     "reduction_factor must be a whole number >= 2, got 1.5"),
])
def test_options_optuna_takes_unchecked_are_refused_with_the_value(build, says):
    with pytest.raises(ValueError, match=f"^{re.escape(says)}$"):
        build()


def test_a_study_file_may_pass_the_class_s_own_keywords_but_no_callables():
    names = option_names(optuna.samplers.TPESampler)
    assert {"seed", "n_startup_trials", "multivariate"} <= names and "constraints_func" not in names
