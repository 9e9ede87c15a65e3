"""Which trial is best: one rule for every command that names a winner (best, export, report, run).

A completed trial within the study's limits counts; higher validation accuracy ranks first, and of
equally good trials the earliest wins.
"""

from __future__ import annotations

from collections.abc import Iterable

from optuna.trial import FrozenTrial, TrialState

from hpsearch.limits import within_limits


def val_accuracy(trial: FrozenTrial) -> float:
    """The validation accuracy a completed trial returned (the first objective of a multi-objective study)."""
    return trial.values[0]


def ranked(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The completed trials within limits, best first (a stable sort keeps the earliest of equals first)."""
    eligible = [t for t in trials if t.state == TrialState.COMPLETE and within_limits(t)]
    return sorted(eligible, key=val_accuracy, reverse=True)


def best_trial(trials: Iterable[FrozenTrial]) -> FrozenTrial | None:
    ranking = ranked(trials)
    return ranking[0] if ranking else None
