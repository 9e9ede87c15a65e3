"""A study's limits (parameters, training seconds): measured per trial and recorded as Optuna constraints.

Each limit a study sets becomes one constraint per trial, `trial.set_constraint(name, measured - limit)`,
so a value > 0 means over it, as Optuna's constraint-aware samplers (TPE, GP, NSGA-II) read it. A trial
over a limit is stopped where that is known (objective.py): it never counts as the best, never reaches
the target, and keeps its reason in the `over_limit` user attribute. Standard library only: the
study-file checks and the displays import this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpsearch.record.keys import MEASURES  # what a limit or a second objective may bound: params, train_seconds

if TYPE_CHECKING:
    from optuna.trial import BaseTrial, FrozenTrial

    from hpsearch.studyfile.types import Limits


def within_limits(trial: FrozenTrial) -> bool:
    """True unless a constraint (one per limit, value > 0 means over it) was broken."""
    return all(value <= 0 for value in trial.constraints.values())


def over(limits: Limits, name: str, value: float) -> str | None:
    """Why `value` breaks the study's limit `name`, or None (also when the study sets no such limit)."""
    bound = getattr(limits, name)
    if bound is None or value <= bound:
        return None
    return f"{name} {value:,} over the limit {bound:,}"


def record(trial: BaseTrial, limits: Limits, name: str, value: float) -> None:
    """Record `value` against the limit `name` as the trial's constraint, if the study sets that limit."""
    bound = getattr(limits, name)
    if bound is not None:
        trial.set_constraint(name, value - bound)


def describe(limits: Limits | dict) -> str:
    """'params <= 100,000, train_seconds <= 60', or 'none'; from a Limits or the study's stored dict of it."""
    given = limits if isinstance(limits, dict) else {name: getattr(limits, name) for name in MEASURES}
    return ", ".join(f"{name} <= {bound:,}" for name, bound in given.items() if bound is not None) or "none"
