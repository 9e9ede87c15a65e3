"""The samplers and pruners a study can pick (`sampler:`, `pruner:`): one row each, so the next one is one entry.

A row says what hpsearch must know of a component to check a study file and build it: its Optuna
class, named by its dotted path so that checking a file never imports Optuna (search/samplers.py
resolves it when it builds one), the options Optuna accepts unchecked, and what hpsearch adds. A
study file may pass the class's own keyword arguments beside the name; `min_epochs` is hpsearch's
one shared spelling of "do not prune before this epoch", and each pruner row says where it goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sampler:
    name: str
    optuna_class: str  # dotted path, e.g. "optuna.samplers.TPESampler"
    # Options Optuna's constructor takes unchecked, whose bad values then fail the first trial with a
    # traceback: the least whole number each allows.
    least: Mapping[str, int] = field(default_factory=dict)
    single_objective: bool = False  # refused for a study with two objectives
    package: str | None = None  # a package its Optuna class imports that hpsearch does not install


@dataclass(frozen=True)
class Pruner:
    name: str
    optuna_class: str  # dotted path, e.g. "optuna.pruners.MedianPruner"
    least: Mapping[str, int] = field(default_factory=dict)  # as Sampler.least
    min_epochs_argument: str | None = None  # the argument `min_epochs` becomes; None: it has no such argument
    epochs_argument: str | None = None  # an argument that defaults to the study's epochs per trial
    defaults: Mapping[str, Any] = field(default_factory=dict)  # hpsearch's defaults where Optuna has none


SAMPLERS: dict[str, Sampler] = {s.name: s for s in (
    Sampler("tpe", "optuna.samplers.TPESampler", least={"n_ei_candidates": 1}),  # 0 draws no candidates
    Sampler("random", "optuna.samplers.RandomSampler"),
    Sampler("cmaes", "optuna.samplers.CmaEsSampler", single_objective=True, package="cmaes"),
    Sampler("gp", "optuna.samplers.GPSampler"),
    Sampler("qmc", "optuna.samplers.QMCSampler"),
    # The genetic classic for fronts; its first population is random.
    Sampler("nsga2", "optuna.samplers.NSGAIISampler"),
)}

PRUNERS: dict[str, Pruner] = {p.name: p for p in (
    Pruner("none", "optuna.pruners.NopPruner"),
    Pruner("median", "optuna.pruners.MedianPruner", min_epochs_argument="n_warmup_steps"),
    Pruner("percentile", "optuna.pruners.PercentilePruner", min_epochs_argument="n_warmup_steps",
           defaults={"percentile": 50.0}),  # the median unless told
    Pruner("successive_halving", "optuna.pruners.SuccessiveHalvingPruner", min_epochs_argument="min_resource"),
    Pruner("hyperband", "optuna.pruners.HyperbandPruner", least={"reduction_factor": 2},  # 1 divides by log(1)
           min_epochs_argument="min_resource", epochs_argument="max_resource"),
)}
