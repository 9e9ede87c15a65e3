"""Mean, sample standard deviation and Student's t interval of a few accuracies, clipped to [0, 1]."""

from __future__ import annotations

import pytest

from hpsearch.results.stats import describe, spread


def test_two_seeds_give_a_wide_t_interval_clipped_at_one_accuracy():
    two = spread([0.97, 0.99])
    assert two["mean"] == pytest.approx(0.98) and two["std"] == pytest.approx(0.02 / 2 ** 0.5)
    assert two["ci95"] == [pytest.approx(0.98 - 12.706 * 0.01, abs=1e-4), 1.0]  # t(0.975, 1 df) = 12.706
    assert describe(two) == "0.9800 ± 0.0141 (95% interval 0.8529 to 1.0000)"


def test_one_seed_has_no_spread():
    assert spread([0.9]) == {"mean": 0.9, "std": None, "ci95": None}
    assert describe(spread([0.9])) == "0.9000 (one seed: no spread)"
