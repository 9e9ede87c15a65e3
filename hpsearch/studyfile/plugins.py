"""Model families and datasets from code outside hpsearch: an installed plugin's, or a study's own.

A study names a function of its own by its import path, `package.module:function`, where it would name a family or
a dataset: `family: mylab.nets:build`, `dataset: {name: mylab.data:load}`. A plugin package registers named ones
for every study through two entry-point groups, each entry naming a row of hpsearch's own tables:

    [project.entry-points."hpsearch.families"]
    labnet = "lab_models.table:LABNET"   # a studyfile.families.Family with builder="lab_models.nets:build"
    [project.entry-points."hpsearch.datasets"]
    cells = "lab_models.table:CELLS"     # a studyfile.types.Dataset with builder="lab_models.data:load"

The module a row lives in must import no torch: `hpsearch params` and the study-file checks read it. The function a
row names is imported only when a model is built or data read (training/usercode.py), never when a study is only
read. Plugins are looked for the first time a name is not hpsearch's own, so the shipped studies never scan for them.

This module imports neither torch nor any user code.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from hpsearch.errors import one_line
from hpsearch.studyfile.families import FAMILIES, Family
from hpsearch.studyfile.param import Param
from hpsearch.studyfile.types import DATASETS, Dataset

log = logging.getLogger(__name__)

FAMILY_GROUP = "hpsearch.families"
DATASET_GROUP = "hpsearch.datasets"
_IDENTIFIERS = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_IMPORT_PATH = re.compile(rf"{_IDENTIFIERS}:{_IDENTIFIERS}", re.ASCII)


def is_import_path(value: Any) -> bool:
    """Whether `value` names a function as package.module:function."""
    return isinstance(value, str) and _IMPORT_PATH.fullmatch(value) is not None


# --------------------------------------------------------------------------------------------
# The rows: hpsearch's own, then the plugins', then a study's own import path.


def family(name: Any) -> Family | None:
    """The family `name` stands for, or None: hpsearch's own, an installed plugin's, or a study's own builder."""
    if not isinstance(name, str):
        return None
    if name in FAMILIES:
        return FAMILIES[name]
    if is_import_path(name):
        return _builder_family(name)
    return plugin_families().get(name)


def dataset(name: Any) -> Dataset | None:
    """The dataset `name` stands for, or None: hpsearch's own, an installed plugin's, or a study's own builder."""
    if not isinstance(name, str):
        return None
    if name in DATASETS:
        return DATASETS[name]
    if is_import_path(name):
        return Dataset(name, None, None, builder=name)
    return plugin_datasets().get(name)


def all_families() -> dict[str, Family]:
    return {**FAMILIES, **plugin_families()}


def all_datasets() -> dict[str, Dataset]:
    return {**DATASETS, **plugin_datasets()}


@functools.cache
def _builder_family(path: str) -> Family:
    return Family(path, f"built by {path}", builder=path, builder_params=None)


@functools.cache
def plugin_families() -> dict[str, Family]:
    """The families installed plugins register, by name (each plugin's table loaded once a process)."""
    return _registered(FAMILY_GROUP, Family, FAMILIES, _family_problem)


@functools.cache
def plugin_datasets() -> dict[str, Dataset]:
    """The datasets installed plugins register, by name."""
    return _registered(DATASET_GROUP, Dataset, DATASETS, lambda row: None if is_import_path(row.builder) else
                       f"its builder must be the import path of a function, package.module:function, got {row.builder!r}")


def entry_points(group: str) -> Any:
    """The installed packages' entry points in `group`. importlib.metadata is imported here, when a plugin is first
    looked for: at the top of this module it was 22 ms of the CLI's 130-ms import (python -X importtime) for every
    command, most of which never look."""
    from importlib.metadata import entry_points as installed

    return installed(group=group)


def _registered(group: str, row_type: type, own: dict, problem: Callable[[Any], str | None]) -> dict[str, Any]:
    """The rows registered under `group`. A plugin whose row cannot be used is left out with a warning naming it:
    one broken package must not stop every command."""
    rows: dict[str, Any] = {}
    for point in entry_points(group=group):
        where = f"plugin {point.dist.name if point.dist else '?'}: {group} {point.name} = {point.value}"
        try:
            row = point.load()
        except Exception as exc:  # noqa: BLE001 - another package's code: whatever it raises, it is left out
            log.warning("%s cannot be loaded (%s): left out", where, one_line(exc))
            continue
        why = (f"is a {type(row).__name__}, not a {row_type.__name__} row" if not isinstance(row, row_type) else
               f"names itself {row.name!r}: the entry point's name must be its name" if row.name != point.name else
               f"{point.name} is hpsearch's own" if point.name in own else
               "another plugin registers the same name" if point.name in rows else problem(row))
        if why:
            log.warning("%s %s: left out", where, why)
            continue
        rows[point.name] = row
    return rows


def _family_problem(row: Family) -> str | None:
    if not is_import_path(row.builder):
        return f"its builder must be the import path of a function, package.module:function, got {row.builder!r}"
    if row.params:
        return "takes hpsearch's own model parameters (params): a plugin's family declares its own, builder_params"
    if not isinstance(row.builder_params, tuple) or not all(isinstance(p, Param) for p in row.builder_params):
        return "builder_params must be a tuple of hpsearch.studyfile.params.Param rows"
    names = [p.name for p in row.builder_params]
    if not all(name.isidentifier() for name in names) or len(set(names)) != len(names):
        return f"builder_params must have distinct names that are Python identifiers, got {', '.join(names)}"
    return None
