"""The user's own code that builds a model or reads data, imported by its import path when a trial needs it: each
problem with it one line naming the builder, and the sha256 of its module's source, which a trial records so that
`train` can say when the code it finds is not the code that trained the trial.

The builders are found by name in studyfile/plugins.py (a plugin's, or a study's own import path); the models and
images they give are checked where they are used (models.py, datasets.py).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpsearch.errors import HpsearchError, one_line
from hpsearch.studyfile.plugins import dataset, family

MODEL_BUILDER, DATA_BUILDER = "model builder", "data builder"  # what a message calls each kind of function
_SIGNATURES = {MODEL_BUILDER: ("params", "input_shape", "num_classes"), DATA_BUILDER: ("options", "data_dir")}


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
    _find_the_working_folder()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's code: any error is theirs to fix, said in one line
        hint = (": install its package, run from the folder that holds it, or put that folder on PYTHONPATH"
                if isinstance(exc, ModuleNotFoundError) and f"{module_name}.".startswith(f"{exc.name}.") else "")
        raise UserCodeError(f"{role} {path}: cannot import {module_name} ({one_line(exc)}){hint}") from None
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


def _find_the_working_folder() -> None:
    """Modules in the current folder import as `python -m hpsearch` would find them, though the `hpsearch` script
    leaves that folder off sys.path: a study's mynets.py beside it works. Last, so an installed package wins."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


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
