"""Whether a trial kept within its study's limits, as Optuna records it (trial constraints)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


def within_limits(trial: FrozenTrial) -> bool:
    """True unless a constraint (one per limit, value > 0 means over it) was broken."""
    return all(value <= 0 for value in trial.constraints.values())
