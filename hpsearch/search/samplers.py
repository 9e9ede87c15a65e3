"""Samplers and pruners by name: a small table onto Optuna's own classes, no wrappers.

A study file names one of each and may pass the class's own keyword arguments beside the name;
`min_epochs` is hpsearch's one shared spelling of "do not prune before this epoch".
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from typing import Any

import optuna

SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
    "nsga2": optuna.samplers.NSGAIISampler,  # the genetic classic for fronts; its first population is random
}

PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
}

# Where `min_epochs` goes in each pruner's own arguments.
_MIN_EPOCHS_ARGUMENT = {
    "median": "n_warmup_steps",
    "percentile": "n_warmup_steps",
    "successive_halving": "min_resource",
    "hyperband": "min_resource",
}


# Options that Optuna's constructors take unchecked, and whose bad values then fail the first trial with a
# traceback (TPE draws no candidates; Hyperband divides by log(1)): the least whole number each allows.
_LEAST = {"tpe": {"n_ei_candidates": 1}, "hyperband": {"reduction_factor": 2}}


def _check_least(name: str, kwargs: Mapping[str, Any]) -> None:
    for option, least in _LEAST.get(name, {}).items():
        value = kwargs.get(option, least)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
            raise ValueError(f"{option} must be a whole number >= {least}, got {value!r}")


def option_names(cls: type) -> set[str]:
    """The keyword arguments a study file may pass to `cls`."""
    return {
        name
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and not name.endswith("_func")
    }


def make_sampler(name: str, options: Mapping[str, Any], seed: int | None) -> optuna.samplers.BaseSampler:
    cls = SAMPLERS[name]
    kwargs = dict(options)
    _check_least(name, kwargs)
    if seed is not None and "seed" in option_names(cls):
        kwargs["seed"] = seed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # qmc's, on stderr at every build
        return cls(**kwargs)


def make_pruner(name: str, options: Mapping[str, Any], epochs: int) -> optuna.pruners.BasePruner:
    kwargs = dict(options)
    min_epochs = kwargs.pop("min_epochs", None)
    if min_epochs is not None and name in _MIN_EPOCHS_ARGUMENT:
        kwargs[_MIN_EPOCHS_ARGUMENT[name]] = min_epochs
    _check_least(name, kwargs)
    if name == "hyperband":
        kwargs.setdefault("max_resource", epochs)
    if name == "percentile":
        kwargs.setdefault("percentile", 50.0)
    return PRUNERS[name](**kwargs)
