"""One searchable parameter (Param): its type, default, bounds, and the check of a value.

A leaf, so that a plugin's table of its family's own parameters (studyfile/plugins.py reads it) imports
nothing that reads plugins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


def always(p: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class Param:
    """One searchable axis.

    kind: "int", "float", "bool", "choice" (one of `choices`) or "ints" (a list of ints, one per
    block or head layer; searched as a choice among lists); "any" for a parameter of a study's own model
    builder, declared nowhere: a number, a string, true/false or a list of them, typed by its distribution.
    low/high: inclusive bounds a value must respect (None: unbounded on that side);
    high_open makes the upper bound exclusive (dropout < 1).
    active: given the parameters resolved so far, whether this one has any effect; inactive
    parameters are neither sampled nor stored. A model parameter is also inactive where the
    trial's family does not take it (families.FAMILIES), so `active` need not say so.
    architecture: it decides the layers and their weights, so a study that starts from a trained
    model (`init:`) takes it from that model instead of searching it.
    transfer: it only means something for a trial that starts from trained weights.
    check: why a value is not allowed, in place of the check `kind` implies (family: a plugin's family or a
    builder's import path is one too).
    """

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    active: Callable[[Mapping[str, Any]], bool] = always
    architecture: bool = False
    transfer: bool = False
    check: Callable[[Any], str | None] | None = None

    def bounds_text(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"[{low}, {high}{')' if self.high_open else ']'}"

    def check_value(self, value: Any) -> str | None:
        """Why `value` is not allowed for this parameter, or None if it is."""
        if self.check is not None:
            return self.check(value)
        if self.kind == "any":
            return None if is_plain(value) else "must be a number, a string, true/false or a list of them"
        if self.kind == "bool":
            return None if isinstance(value, bool) else "must be true or false"
        if self.kind == "choice":
            return None if value in self.choices else f"must be one of {', '.join(map(str, self.choices))}"
        if self.kind == "ints":
            if not isinstance(value, list) or not all(is_int(v) for v in value):
                return "must be a list of integers, e.g. [32, 64]"
            bad = [v for v in value if self.low is not None and v < self.low]
            return f"list values must be >= {self.low:g}" if bad else None
        if self.kind == "int" and not is_int(value):
            return "must be an integer"
        if self.kind == "float" and not is_number(value):
            return "must be a number"
        if not math.isfinite(value):
            return "must be finite"
        if self.low is not None and value < self.low:
            return f"must be in {self.bounds_text()}"
        if self.high is not None and (value > self.high or (self.high_open and value >= self.high)):
            return f"must be in {self.bounds_text()}"
        return None


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_plain(value: Any) -> bool:
    """A value a builder's parameter may take: what Optuna stores as a choice, or a list of such values."""
    if isinstance(value, list):
        return all(is_plain(v) and not isinstance(v, list) for v in value)
    return isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))
