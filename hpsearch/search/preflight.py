"""What is checked before a run trains, where it cannot be checked on reading the study file: the sampler and
pruner options (Optuna builds each), the baselines and a fixed architecture that must fit the data (torch builds
them on the meta device), that the user's own model and data builders import (their code runs only here and in
the commands that train), and the storage the run will write to.

Reading a study file (studyfile/schema.py) builds nothing, so that `best`, `report` and `export` never import
torch; the commands that train (api.run, api.submit) call check() once the file has read well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from hpsearch.defaults import DEFAULT_HEARTBEAT_S
from hpsearch.errors import SpecError
from hpsearch.search.retries import queue_retry
from hpsearch.search.samplers import (
    make_pruner,
    make_sampler,
    option_names,
    optuna_class,
)
from hpsearch.search.studystore import check_existing
from hpsearch.storage import (
    cached,
    check_sqlite_folder,
    is_new_sqlite,
    open_storage,
    sqlite_file,
)
from hpsearch.studyfile import params as P
from hpsearch.studyfile import plugins
from hpsearch.studyfile.baselines import BASELINES, Baseline
from hpsearch.studyfile.components import PRUNERS, SAMPLERS
from hpsearch.studyfile.schema import Problems
from hpsearch.studyfile.types import (
    Component,
    DatasetSpec,
    Distribution,
    InitSpec,
    StudySpec,
)
from hpsearch.training import usercode


def check(spec: StudySpec, *, models: bool = True) -> None:
    """SpecError listing every problem these checks find, each as `file: key: problem` like the file's own.
    Whether the models fit the data (`models`) is checked by building them, which loads torch (seconds): `submit`
    leaves that to its tasks, which refuse such a study as they start, in one line of their log."""
    problems = Problems()
    check_components(spec.sampler, spec.pruner, spec.budget.epochs, problems)
    if models:
        check_baselines(spec.baselines, spec.dataset, spec.init, problems)
        check_fixed_architecture(spec.dataset, spec.init, spec.space, spec.fixed, problems)
        check_user_code(spec, problems)
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
    from hpsearch.training.space import fit_problem

    for name in dict.fromkeys(names):
        if data_input := _input_of(dataset, BASELINES[name]):
            if why := fit_problem(BASELINES[name], *data_input):
                problems.add("baselines", f"{name} does not fit {dataset.name}: {why}")


def check_fixed_architecture(dataset: DatasetSpec, init: InitSpec | None, space: Mapping[str, Any],
                             fixed: Mapping[str, Any], problems: Problems) -> None:
    """A fixed architecture that cannot take the dataset's images would fail every trial: refuse it now."""
    if init is not None:  # the source model's architecture applies (transfer.py)
        return
    if P.family_row(fixed.get("family", P.BY_NAME["family"].default)).builder is not None:
        return  # the user's code: it runs when a trial builds it, and a trial it fails fails with its words
    if (known := known_input(dataset)) is None:
        return
    shape, classes = known
    if classes is None:  # an image folder's: known once read; only sigmoid cares
        classes = 2
    from hpsearch.training.space import fixed_architecture_problem

    if why := fixed_architecture_problem(fixed, set(space), shape, classes):
        problems.add("fixed", f"does not fit {dataset.name}: {why}")


def check_user_code(spec: StudySpec, problems: Problems) -> None:
    """The builders the study names, imported now (this runs the user's modules): one that cannot be, or that takes
    other arguments, is refused before anything is written. The models they build are checked as trials build them."""
    named = [("family", usercode.MODEL_BUILDER, builder) for builder in _model_builders(spec)]
    if (row := plugins.dataset(spec.dataset.name)) is not None and row.builder is not None:
        named.append(("dataset.name", usercode.DATA_BUILDER, row.builder))
    for key, role, path in named:
        try:
            usercode.load_function(path, role)
        except usercode.UserCodeError as exc:
            problems.add(key, str(exc))


def _model_builders(spec: StudySpec) -> list[str]:
    """The builders of the families the study's trials can have: fixed, searched, or the default."""
    family = spec.space.get("family")
    names = (spec.fixed["family"],) if "family" in spec.fixed else (
        family.choices if isinstance(family, Distribution) else (P.BY_NAME["family"].default,))
    return [row.builder for name in names if (row := plugins.family(name)) is not None and row.builder is not None]


def known_input(dataset: DatasetSpec) -> tuple[tuple[int, int, int], int | None] | None:
    """The (C, H, W) input and class count a model of this dataset sees, as far as they are known without
    reading it: the classes None until it is read, the whole None without a valid image_size (and for a data
    builder that does not declare them)."""
    row = plugins.dataset(dataset.name)
    if row.input_shape is not None:
        return row.input_shape, row.classes
    if row.builder is not None or dataset.image_size is None:
        return None
    return (3, *dataset.image_size), row.classes


def _input_of(dataset: DatasetSpec, baseline: Baseline) -> tuple[tuple[int, int, int], int] | None:
    """The (C, H, W) input and class count to check a baseline on, without reading any data: the baseline's
    own class count where the dataset's is known only once read."""
    if (known := known_input(dataset)) is None:
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
    storage = cached(open_storage(url, heartbeat=heartbeat, on_lost=queue_retry))
    check_existing(spec, storage, accept_change)
    return storage
