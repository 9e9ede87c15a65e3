"""What is checked before a run trains, where it cannot be checked on reading the study file: the sampler and
pruner options (Optuna builds each), the baselines and a fixed architecture that must fit the data (torch builds
them on the meta device), and the storage the run will write to.

Reading a study file (studyfile/schema.py) builds nothing, so that `best`, `report` and `export` never import
torch; the commands that train (api.run, api.submit) call check() once the file has read well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from hpsearch.defaults import DEFAULT_HEARTBEAT_S
from hpsearch.errors import SpecError
from hpsearch.search.samplers import make_pruner, make_sampler, option_names, optuna_class
from hpsearch.search.studystore import check_existing
from hpsearch.storage import cached, check_sqlite_folder, is_new_sqlite, open_storage, sqlite_file
from hpsearch.studyfile.baselines import BASELINES, Baseline
from hpsearch.studyfile.components import PRUNERS, SAMPLERS
from hpsearch.studyfile.schema import Problems
from hpsearch.studyfile.types import Component, DatasetSpec, InitSpec, StudySpec
from hpsearch.training.space import fit_problem, fixed_architecture_problem


def check(spec: StudySpec) -> None:
    """SpecError listing every problem these checks find, each as `file: key: problem` like the file's own."""
    problems = Problems()
    check_components(spec.sampler, spec.pruner, spec.budget.epochs, problems)
    check_baselines(spec.baselines, spec.dataset, spec.init, problems)
    check_fixed_architecture(spec.dataset, spec.init, spec.space, spec.fixed, problems)
    if problems.lines:
        raise SpecError(spec.path, problems.lines)


def check_components(sampler: Component, pruner: Component, epochs: int, problems: Problems) -> None:
    """Options their Optuna classes accept: each is built once. Their names are known already (schema checks
    them against components.py's table)."""
    for key, component, table, build, ours in (
            ("sampler", sampler, SAMPLERS, lambda c: make_sampler(c.name, c.options, None), set()),
            ("pruner", pruner, PRUNERS, lambda c: make_pruner(c.name, c.options, epochs), {"min_epochs"})):
        allowed = option_names(optuna_class(table[component.name])) | ours
        problems.unknown_keys(f"{key}.", component.options, allowed)
        if any(k not in allowed for k in component.options):
            continue
        try:
            build(component)
        except (TypeError, ValueError) as exc:
            problems.add(key, f"{component.name} rejects these options: {exc}")


def check_baselines(names: tuple[str, ...], dataset: DatasetSpec, init: InitSpec | None, problems: Problems) -> None:
    """Each baseline fits the dataset's input and classes, checked now rather than mid-study (schema has checked
    the names, and which start from trained weights).

    An imagefolder's classes are only known once it is read, so here its baselines are checked on their own class
    count (search/run.py checks the real one); transfer baselines take the source model's architecture, known at
    run time.
    """
    if init is not None:
        return
    for name in dict.fromkeys(names):
        if data_input := _input_of(dataset, BASELINES[name]):
            if why := fit_problem(BASELINES[name], *data_input):
                problems.add("baselines", f"{name} does not fit {dataset.name}: {why}")


def check_fixed_architecture(dataset: DatasetSpec, init: InitSpec | None, space: Mapping[str, Any],
                             fixed: Mapping[str, Any], problems: Problems) -> None:
    """A fixed architecture that cannot take the dataset's images would fail every trial: refuse it now."""
    if init is not None:  # the source model's architecture applies (transfer.py)
        return
    if (known := dataset.known_input()) is None:
        return
    shape, classes = known
    if classes is None:  # an image folder's: known once read; only sigmoid cares
        classes = 2
    if why := fixed_architecture_problem(fixed, set(space), shape, classes):
        problems.add("fixed", f"does not fit {dataset.name}: {why}")


def _input_of(dataset: DatasetSpec, baseline: Baseline) -> tuple[tuple[int, int, int], int] | None:
    """The (C, H, W) input and class count to check a baseline on, without reading any data: the baseline's
    own class count where the dataset's is known only once read."""
    if (known := dataset.known_input()) is None:
        return None
    shape, classes = known
    return shape, baseline.num_classes if classes is None else classes


def check_storage(spec: StudySpec, url: str, *, heartbeat: int = DEFAULT_HEARTBEAT_S,
                  accept_change: bool = False) -> optuna.storages.BaseStorage | None:
    """The storage a run will write to, checked before any data is read: a new SQLite file's folder must take it
    (the file itself is made once the data is read, so that a run that cannot start writes nothing); any other
    storage is opened, and a study already in it checked against the file (studystore.check_existing).

    Returns the storage opened (cached: one cache a process), or None for a new SQLite file.
    """
    if is_new_sqlite(url):
        check_sqlite_folder(sqlite_file(url))
        return None
    storage = cached(open_storage(url, heartbeat=heartbeat))
    check_existing(spec, storage, accept_change)
    return storage
