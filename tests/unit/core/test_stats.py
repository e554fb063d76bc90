"""Bootstrap CIs in the core (used by rag's retrieval evaluation and embedder tuning)."""

from __future__ import annotations

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.stats import bootstrap_difference, bootstrap_mean


def test_bootstrap_mean_brackets_the_mean_and_narrows_with_more_data() -> None:
    small = bootstrap_mean([0.0, 1.0] * 5, n_boot=1000)
    large = bootstrap_mean([0.0, 1.0] * 200, n_boot=1000)
    for ci in (small, large):
        assert ci["mean"] == 0.5
        assert ci["ci_low"] < 0.5 < ci["ci_high"]
    assert large["ci_high"] - large["ci_low"] < small["ci_high"] - small["ci_low"]
    assert bootstrap_mean([0.7] * 9) == pytest.approx({"mean": 0.7, "ci_low": 0.7, "ci_high": 0.7})
    assert bootstrap_mean([0.0, 1.0, 1.0], seed=3) == bootstrap_mean([0.0, 1.0, 1.0], seed=3)


def test_paired_difference_sees_a_consistent_gain_that_unpaired_spread_hides() -> None:
    before = [0.1 * i for i in range(20)]  # widely spread values ...
    after = [b + 0.05 for b in before]  # ... each raised by the same small amount
    diff = bootstrap_difference(before, after)
    assert diff["diff"] == pytest.approx(0.05)
    assert diff["ci_low"] == pytest.approx(0.05) and diff["ci_high"] == pytest.approx(0.05)
    mixed = bootstrap_difference([0, 1, 0, 1, 1, 0], [1, 0, 1, 0, 1, 0])
    assert mixed["ci_low"] < 0 < mixed["ci_high"]


def test_bad_input_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="at least one value"):
        bootstrap_mean([])
    with pytest.raises(InvalidInputError, match="n_boot"):
        bootstrap_mean([1.0], n_boot=0)
    with pytest.raises(InvalidInputError, match="equal lengths"):
        bootstrap_difference([1.0], [1.0, 2.0])
