"""The study-file checks that build components: sampler and pruner options (Optuna builds each),
whether each baseline and a fixed architecture fit the data (torch builds them on the meta device), and
that the user's own builders import (their code runs only here and in the commands that train).

They import those libraries only when they run, so `hpsearch studies` (which skips them) starts in a blink.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hpsearch import plugins
from hpsearch.studyfile import params as P
from hpsearch.studyfile.components import PRUNERS, SAMPLERS
from hpsearch.studyfile.schema import Problems, shown
from hpsearch.studyfile.types import Component, DatasetSpec, InitSpec

if TYPE_CHECKING:
    from hpsearch.studyfile.baselines import Baseline
    from hpsearch.studyfile.families import Family


def check_components(sampler: Component | None, pruner: Component | None, epochs: int, problems: Problems) -> None:
    """Options their Optuna classes accept: each is built once (this imports Optuna). Their names are
    known already (schema checks them against components.py's table)."""
    from hpsearch.search.samplers import make_pruner, make_sampler, option_names, optuna_class

    for key, component, table, build, ours in (
            ("sampler", sampler, SAMPLERS, lambda c: make_sampler(c.name, c.options, None), set()),
            ("pruner", pruner, PRUNERS, lambda c: make_pruner(c.name, c.options, epochs), {"min_epochs"})):
        if component is None:
            continue
        allowed = option_names(optuna_class(table[component.name])) | ours
        problems.unknown_keys(f"{key}.", component.options, allowed)
        if any(k not in allowed for k in component.options):
            continue
        try:
            build(component)
        except (TypeError, ValueError) as exc:
            problems.add(key, f"{component.name} rejects these options: {exc}")


def check_baselines(names: tuple[str, ...], dataset: DatasetSpec | None, init: InitSpec | None,
                     problems: Problems) -> None:
    """Known names that fit the dataset's input and classes, checked now rather than mid-study
    (each is built on the meta device: this imports torch).

    An imagefolder's classes are only known once it is read, so here its baselines are checked
    on their own class count (study.run checks the real one); transfer baselines take the source
    model's architecture, known at run time.
    """
    from hpsearch.studyfile.baselines import BASELINES
    from hpsearch.training.space import fit_problem

    for name in dict.fromkeys(names):
        baseline = BASELINES.get(name)
        if baseline is None:
            problems.add("baselines", f"unknown baseline {shown(name)} (allowed: {', '.join(BASELINES)}; "
                                      "`hpsearch baselines` lists them)")
        elif baseline.transfer and init is None:
            problems.add("baselines", f"{name} starts from trained weights: it needs init: (the model to start from)")
        elif not baseline.transfer and init is not None:
            transfer = ", ".join(b.name for b in BASELINES.values() if b.transfer)
            problems.add("baselines", f"{name} has an architecture of its own, and a study with init: takes the "
                                      f"source model's (baselines that start from it: {transfer})")
        elif not baseline.transfer and dataset is not None and (data_input := _input_of(dataset, baseline)):
            if why := fit_problem(baseline, *data_input):
                problems.add("baselines", f"{name} does not fit {dataset.name}: {why}")


def check_fixed_architecture(dataset: DatasetSpec | None, init: InitSpec | None, space: Mapping[str, Any],
                              fixed: Mapping[str, Any], problems: Problems) -> None:
    """A fixed architecture that cannot take the dataset's images would fail every trial: refuse it now."""
    if dataset is None or init is not None:  # with init:, the source model's architecture applies (transfer.py)
        return
    if P.family_row(fixed.get("family", P.BY_NAME["family"].default)).builder is not None:
        return  # the user's code: it runs when a trial builds it, and a trial it fails fails with its words
    if (known := dataset.known_input()) is None:
        return
    shape, classes = known
    if classes is None:  # an image folder's: known once read; only sigmoid cares
        classes = 2
    from hpsearch.training.space import fixed_architecture_problem  # builds on torch's meta device

    if why := fixed_architecture_problem(fixed, set(space), shape, classes):
        problems.add("fixed", f"does not fit {dataset.name}: {why}")


def check_user_code(dataset: DatasetSpec | None, families: list[Family], problems: Problems) -> None:
    """The builders the study names, imported now (this runs the user's modules): one that cannot be, or that takes
    other arguments, is refused before anything is written. The models they build are checked as trials build them."""
    named = [("family", plugins.MODEL_BUILDER, f.builder) for f in families if f.builder is not None]
    if dataset is not None and (row := plugins.dataset(dataset.name)) is not None and row.builder is not None:
        named.append(("dataset.name", plugins.DATA_BUILDER, row.builder))
    for key, role, path in named:
        try:
            plugins.load_function(path, role)
        except plugins.UserCodeError as exc:
            problems.add(key, str(exc))


def _input_of(dataset: DatasetSpec, baseline: Baseline) -> tuple[tuple[int, int, int], int] | None:
    """The (C, H, W) input and class count to check a baseline on, without reading any data: the baseline's
    own class count where the dataset's is known only once read."""
    if (known := dataset.known_input()) is None:
        return None
    shape, classes = known
    return shape, baseline.num_classes if classes is None else classes
