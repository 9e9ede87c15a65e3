"""Which trial is best: one rule for every command that names a winner (best, export, report, run).

A completed trial within the study's limits counts; higher validation accuracy ranks first, and of
equally good trials the earliest wins. Once `hpsearch confirm` has retrained some of them with new
seeds, the winner is the confirmed trial with the best mean validation accuracy over those seeds:
a single run's accuracy favours the luckiest seed of many trials, a mean over new seeds does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from optuna.trial import FrozenTrial, TrialState

from hpsearch.limits import within_limits

CONFIRM_ATTR = "confirm"  # the trial's retraining with new seeds (confirm.py writes it)

# How each objective of a front is read from a trial, and whether more is better.
OBJECTIVES = {
    "val_accuracy": (lambda t: t.values[0], True),
    "params": (lambda t: t.user_attrs.get("param_count"), False),
    "train_seconds": (lambda t: t.user_attrs.get("seconds"), False),
}


def val_accuracy(trial: FrozenTrial) -> float:
    """The validation accuracy a completed trial returned (the first objective of a multi-objective study)."""
    return trial.values[0]


def ranked(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The completed trials within limits, best first (a stable sort keeps the earliest of equals first)."""
    eligible = [t for t in trials if t.state == TrialState.COMPLETE and within_limits(t)]
    return sorted(eligible, key=val_accuracy, reverse=True)


def confirmed_mean(trial: FrozenTrial) -> float | None:
    """The mean validation accuracy of the trial's confirmation seeds, or None if it has none."""
    confirm = trial.user_attrs.get(CONFIRM_ATTR) or {}
    return confirm.get("val", {}).get("mean") if confirm.get("seeds") else None


def confirmed(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The ranked trials that hold confirmation seeds, best mean first (earliest of equals first)."""
    return sorted((t for t in ranked(trials) if confirmed_mean(t) is not None),
                  key=lambda t: (-confirmed_mean(t), t.number))


def single_run_best(trials: Iterable[FrozenTrial]) -> FrozenTrial | None:
    """The best trial by its own single run, whatever confirmation says."""
    ranking = ranked(trials)
    return ranking[0] if ranking else None


def best_trial(trials: Iterable[FrozenTrial]) -> FrozenTrial | None:
    """The confirmed winner once there is one, else the single-run best."""
    trials = list(trials)
    winners = confirmed(trials)
    return winners[0] if winners else single_run_best(trials)


def front(trials: Iterable[FrozenTrial], objectives: Sequence[str] = ("val_accuracy", "params")) -> list[FrozenTrial]:
    """The non-dominated completed trials within limits (no other is at least as good in every objective and
    better in one), ordered by the second objective; of trials equal in every objective, the earliest."""
    readers = [OBJECTIVES[name] for name in objectives]
    score = lambda t: tuple(read(t) if more else -read(t) for read, more in readers)  # higher is better
    candidates = [t for t in ranked(trials) if all(read(t) is not None for read, _ in readers)]
    candidates.sort(key=lambda t: t.number)
    kept: list[FrozenTrial] = []
    for trial in candidates:
        mine = score(trial)
        dominated = any(all(o >= m for o, m in zip(score(other), mine)) and score(other) != mine
                        for other in candidates)
        if not dominated and all(score(k) != mine for k in kept):
            kept.append(trial)
    return sorted(kept, key=lambda t: (-score(t)[1] if len(readers) > 1 else 0, t.number))
