"""Which trial is best, and which trials make the front: one rule for every command that names a winner.

A completed trial within the study's limits counts. Higher validation accuracy ranks first; of equally
accurate trials, a multi-objective study prefers the lower second objective (fewer parameters, fewer
training seconds); then the earliest wins. Once `hpsearch confirm` has retrained some of them with new
seeds, the winner is the confirmed trial with the best mean validation accuracy over those seeds: a
single run's accuracy favours the luckiest seed of many trials, a mean over new seeds does not.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial, TrialState

from hpsearch import record
from hpsearch.studyfile.limits import within_limits

if TYPE_CHECKING:
    import optuna


def study_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials, each confirmed one carrying its confirmation (record.confirmation reads it).

    Optuna freezes a finished trial's own attributes, so `hpsearch confirm` stores each trial's results
    as a study user attribute, `confirm #N` (the dashboard lists them with the study); here they are put
    back on copies of their trials, where every ranking rule and display reads them."""
    confirmations = record.study_record(study).confirmations
    trials = study.get_trials(deepcopy=False)
    for index, trial in enumerate(trials):
        if (confirmation := confirmations.get(trial.number)) is not None:
            trials[index] = record.with_confirmation(trial, confirmation)
    return trials


def val_accuracy(trial: FrozenTrial) -> float:
    """The validation accuracy a completed trial returned (the first objective of a multi-objective study)."""
    return trial.values[0]


def counts(trial: FrozenTrial) -> bool:
    """Whether a trial can be the best or reach the target: completed here (not copied from another study by
    warm_start:), and within the study's limits."""
    return trial.state == TrialState.COMPLETE and record.warm_start(trial) is None and within_limits(trial)


def ranked(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The completed trials within limits, best first (a stable sort keeps the earliest of equals first)."""
    eligible = [t for t in trials if counts(t)]
    return sorted(eligible, key=lambda t: (-val_accuracy(t), *t.values[1:]))


def best_searched(trials: Iterable[FrozenTrial]) -> FrozenTrial | None:
    """The best sampled trial by its single run: the best trial when baselines are left out."""
    return next((t for t in ranked(trials) if record.baseline(t) is None), None)


def confirmed_mean(trial: FrozenTrial) -> float | None:
    """The mean validation accuracy of the trial's confirmation seeds, or None if it has none."""
    confirmation = record.confirmation(trial)
    return confirmation.mean_val if confirmation is not None else None


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


CONFIRMED_RULE = "the best mean validation accuracy over new seeds (of equal means, the earliest)"


def how_chosen(*, confirmed: bool, within_limits: bool = False, second: str | None = None) -> str:
    """How best_trial chose, in the words every command that names a winner uses (`second`: a multi-objective
    study's second objective, which breaks ties in accuracy)."""
    if confirmed:
        return f"the confirmed winner, {CONFIRMED_RULE}"
    ties = f"the lower {second}, then the earliest" if second else "the earliest"
    return (f"the highest validation accuracy of all completed trials{' within the limits' if within_limits else ''}"
            f", baselines included (of equal accuracies, {ties})")


def front(trials: Iterable[FrozenTrial], against: str = "params") -> list[FrozenTrial]:
    """The Pareto front of validation accuracy (higher) against `against` (lower: "params" or
    "train_seconds"), most accurate first: the counting trials that no other counting trial matches or
    beats on both while beating it on one. Works on any study: the measures are user attributes every
    trial records (record.measured); a trial without the measure is left out. Exact duplicates both stay.
    """
    points = [(t, record.measured(t, against)) for t in trials if counts(t)]
    points = sorted(((t, m) for t, m in points if m is not None), key=lambda p: (-val_accuracy(p[0]), p[1]))
    result, lowest = [], float("inf")  # lowest: the smallest measure among more accurate trials
    for _, group in itertools.groupby(points, key=lambda p: val_accuracy(p[0])):
        group = list(group)
        least = group[0][1]
        if least < lowest:  # not dominated by a more accurate trial; the group's others are worse on the measure
            result += [t for t, m in group if m == least]
            lowest = least
    return result
