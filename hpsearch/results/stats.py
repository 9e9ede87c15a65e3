"""Mean, sample standard deviation and a 95% interval of a few accuracies, for retraining with several seeds.

The interval is Student's t interval for the mean: with 2 or 3 seeds it is wide, which is the point.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def spread(values: Sequence[float]) -> dict[str, Any]:
    """{"mean", "std", "ci95": [low, high]}; std and ci95 are None for a single value (no spread to measure).
    The interval is clipped to [0, 1]: no accuracy lies outside."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "std": None, "ci95": None}
    from scipy.stats import t  # scikit-learn's dependency; a second to import, only where an interval is drawn

    std = statistics.stdev(values)
    half = float(t.ppf(0.975, len(values) - 1)) * std / len(values) ** 0.5
    return {"mean": mean, "std": std, "ci95": [max(0.0, mean - half), min(1.0, mean + half)]}


def describe(summary: dict[str, Any]) -> str:
    """'0.9815 ± 0.0030 (95% interval 0.9741 to 0.9889)', or '0.9815 (one seed: no spread)'."""
    if summary["std"] is None:
        return f"{summary['mean']:.4f} (one seed: no spread)"
    low, high = summary["ci95"]
    return f"{summary['mean']:.4f} ± {summary['std']:.4f} (95% interval {low:.4f} to {high:.4f})"
