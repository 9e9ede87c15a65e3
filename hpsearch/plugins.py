"""Model families and datasets from code outside hpsearch: an installed plugin's, or a study's own.

A study names a function of its own by its import path, `package.module:function`, where it would name a family or
a dataset: `family: mylab.nets:build`, `dataset: {name: mylab.data:load}`. A plugin package registers named ones
for every study through two entry-point groups, each entry naming a row of hpsearch's own tables:

    [project.entry-points."hpsearch.families"]
    labnet = "lab_models.table:LABNET"   # a studyfile.families.Family with builder="lab_models.nets:build"
    [project.entry-points."hpsearch.datasets"]
    cells = "lab_models.table:CELLS"     # a studyfile.types.Dataset with builder="lab_models.data:load"

The module a row lives in must import no torch: `hpsearch params` and the study-file checks read it. The function a
row names is imported only when a model is built or data read (load_function), never when a study is only read.
Plugins are looked for the first time a name is not hpsearch's own, so the shipped studies never scan for them.

This module imports neither torch nor any user code at import time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from hpsearch.errors import HpsearchError
from hpsearch.studyfile.families import FAMILIES, Family
from hpsearch.studyfile.types import DATASETS, Dataset

log = logging.getLogger(__name__)

FAMILY_GROUP = "hpsearch.families"
DATASET_GROUP = "hpsearch.datasets"
_IDENTIFIERS = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_IMPORT_PATH = re.compile(rf"{_IDENTIFIERS}:{_IDENTIFIERS}", re.ASCII)
MODEL_BUILDER, DATA_BUILDER = "model builder", "data builder"  # what a message calls each kind of function
_SIGNATURES = {MODEL_BUILDER: ("params", "input_shape", "num_classes"), DATA_BUILDER: ("options", "data_dir")}


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


def _registered(group: str, row_type: type, own: dict, problem: Callable[[Any], str | None]) -> dict[str, Any]:
    """The rows registered under `group`. A plugin whose row cannot be used is left out with a warning naming it:
    one broken package must not stop every command."""
    rows: dict[str, Any] = {}
    for point in entry_points(group=group):
        where = f"plugin {point.dist.name if point.dist else '?'}: {group} {point.name} = {point.value}"
        try:
            row = point.load()
        except Exception as exc:  # noqa: BLE001 - another package's code: whatever it raises, it is left out
            log.warning("%s cannot be loaded (%s): left out", where, error_words(exc))
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
    from hpsearch.studyfile.params import Param  # params reads this module's lookups

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


# --------------------------------------------------------------------------------------------
# The functions the rows name, imported when a model is built or data read.


class UserCodeError(HpsearchError):
    """A builder named by import path that cannot be imported, is no function, or takes other arguments."""


@dataclass(frozen=True)
class UserFunction:
    function: Callable[..., Any]
    sha256: str | None  # of its module's source as imported; None where Python has no source for it


def load_function(path: str, role: str) -> UserFunction:
    """The function at `path` (package.module:function), imported once a process, with the sha256 of its module's
    source taken as it was imported: the code that runs, even if the file changes later. `role` (MODEL_BUILDER or
    DATA_BUILDER) says what it is in the one line a problem raises."""
    return _loaded(path, role)


@functools.cache
def _loaded(path: str, role: str) -> UserFunction:
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's code: any error is theirs to fix, said in one line
        raise UserCodeError(f"{role} {path}: cannot import {module_name} ({error_words(exc)})") from None
    function: Any = module
    for part in attribute.split("."):
        if not hasattr(function, part):
            raise UserCodeError(f"{role} {path}: {module_name} has no {attribute}")
        function = getattr(function, part)
    if not callable(function):
        raise UserCodeError(f"{role} {path}: {attribute} is a {type(function).__name__}, not a function")
    try:
        inspect.signature(function).bind(*_SIGNATURES[role])
    except TypeError:
        raise UserCodeError(f"{role} {path} must take ({', '.join(_SIGNATURES[role])}): it takes "
                            f"{inspect.signature(function)}") from None
    except ValueError:  # no signature to read (a builtin): calling it will tell
        pass
    return UserFunction(function, source_sha256(module))


def source_sha256(module: Any) -> str | None:
    try:
        return hashlib.sha256(inspect.getsource(module).encode()).hexdigest()
    except (OSError, TypeError):  # no source file (a compiled module), or not a module Python has source for
        return None


def code_record(family_name: str, dataset_name: str) -> dict[str, dict[str, str]]:
    """What a trial records of the user code that built its model and read its data: each builder's import path and
    the sha256 of its module's source ({} for hpsearch's own families and datasets)."""
    code = {}
    for what, role, row in (("model", MODEL_BUILDER, family(family_name)), ("data", DATA_BUILDER, dataset(dataset_name))):
        if row is not None and row.builder is not None:
            sha256 = load_function(row.builder, role).sha256
            code[what] = {"builder": row.builder, **({"sha256": sha256} if sha256 else {})}
    return code


def code_changes(recorded: dict[str, dict[str, str]]) -> list[str]:
    """One line for each builder whose source, as this process imports it, is not the one a record names."""
    notes = []
    for what, role in (("model", MODEL_BUILDER), ("data", DATA_BUILDER)):
        then = recorded.get(what, {})
        if "sha256" not in then:
            continue
        now = load_function(then["builder"], role).sha256
        if now != then["sha256"]:
            notes.append(f"the {role} {then['builder']} is not the code that trained the trial (its module's source "
                         f"has sha256 {(now or 'unknown')[:12]} here, {then['sha256'][:12]} then): expect other numbers")
    return notes


MAX_WORDS = 200  # characters of an error's message in a line


def error_words(exc: BaseException) -> str:
    """'ValueError: depth must be positive': an exception in one line, cut short."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    words = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return words if len(words) <= MAX_WORDS else words[:MAX_WORDS - 3] + "..."
