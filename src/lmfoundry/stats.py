"""Bootstrap confidence intervals of a mean and of a paired difference, in the standard library.

The project's one bootstrap. Core layer on purpose: `rag` (retrieval evaluation, embedder tuning)
sits below `eval` in the layers, and both need the same resampling; `eval.compare.paired_bootstrap`
adds means and win counts around `bootstrap_difference`. Pure Python keeps the core free of numpy:
2,000 resamples of 500 paired values take under 0.1 s.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from lmfoundry.errors import InvalidInputError


def _check(values: Sequence[float], n_boot: int, confidence: float) -> None:
    if not values:
        raise InvalidInputError("a bootstrap needs at least one value")
    if n_boot < 1 or not 0 < confidence < 1:
        raise InvalidInputError("a bootstrap needs n_boot >= 1 and 0 < confidence < 1")


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values (numpy's default method)."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bootstrap_mean(
    values: Sequence[float], n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, float]:
    """The mean of `values` and a percentile bootstrap CI of it: {"mean", "ci_low", "ci_high"}."""
    _check(values, n_boot, confidence)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(n_boot))
    alpha = (1.0 - confidence) / 2.0
    return {
        "mean": sum(values) / n,
        "ci_low": _quantile(means, alpha),
        "ci_high": _quantile(means, 1.0 - alpha),
    }


def bootstrap_difference(
    before: Sequence[float],
    after: Sequence[float],
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float]:
    """mean(after - before) over paired values with its bootstrap CI: {"diff", "ci_low", "ci_high"}.

    The same items are resampled for both sides, so the CI reflects the per-item change, not the
    spread of each side (a paired test: much tighter when both sides fail on the same items).
    """
    if len(before) != len(after):
        raise InvalidInputError(f"paired values need equal lengths, got {len(before)} and {len(after)}")
    diffs = [b - a for a, b in zip(before, after, strict=True)]
    out = bootstrap_mean(diffs, n_boot, seed, confidence)
    return {"diff": out["mean"], "ci_low": out["ci_low"], "ci_high": out["ci_high"]}
