"""Samplers and pruners built from their rows (studyfile/components.py) as Optuna's own classes, no wrappers."""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Mapping
from typing import Any

import optuna

from hpsearch.studyfile.components import PRUNERS, SAMPLERS, Pruner, Sampler


def optuna_class(row: Sampler | Pruner) -> type:
    """The Optuna class a row names."""
    module, _, name = row.optuna_class.rpartition(".")
    return getattr(importlib.import_module(module), name)


def option_names(cls: type) -> set[str]:
    """The keyword arguments a study file may pass to `cls`."""
    return {
        name
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and not name.endswith("_func")
    }


def _check_least(row: Sampler | Pruner, kwargs: Mapping[str, Any]) -> None:
    for option, least in row.least.items():
        value = kwargs.get(option, least)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
            raise ValueError(f"{option} must be a whole number >= {least}, got {value!r}")


def make_sampler(name: str, options: Mapping[str, Any], seed: int | None) -> optuna.samplers.BaseSampler:
    row = SAMPLERS[name]
    cls = optuna_class(row)
    kwargs = dict(options)
    _check_least(row, kwargs)
    if seed is not None and "seed" in option_names(cls):
        kwargs["seed"] = seed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # qmc's, on stderr at every build
        return cls(**kwargs)


def start_up_trials(name: str, options: Mapping[str, Any]) -> int:
    """How many trials the sampler draws at random before it models the rest: its n_startup_trials, Optuna's
    default where the study file gives none; 0 for a sampler that has no such phase (random, QMC, NSGA-II)."""
    parameter = inspect.signature(optuna_class(SAMPLERS[name])).parameters.get("n_startup_trials")
    return 0 if parameter is None else options.get("n_startup_trials", parameter.default)


def make_pruner(name: str, options: Mapping[str, Any], epochs: int) -> optuna.pruners.BasePruner:
    row = PRUNERS[name]
    kwargs = {**row.defaults, **options}
    min_epochs = kwargs.pop("min_epochs", None)
    if min_epochs is not None and row.min_epochs_argument is not None:
        kwargs[row.min_epochs_argument] = min_epochs
    _check_least(row, kwargs)
    if row.epochs_argument is not None:
        kwargs.setdefault(row.epochs_argument, epochs)
    return optuna_class(row)(**kwargs)
