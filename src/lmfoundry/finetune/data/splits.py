"""Seeded train / validation / test splits of a record list: same seed, same split."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from lmfoundry.errors import InvalidInputError

SPLIT_NAMES = ("train", "validation", "test")


def split_records(
    records: Sequence[dict[str, Any]], seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> dict[str, list[dict[str, Any]]]:
    """Shuffle with `seed` and cut into train/validation[/test]; same seed, same split.

    Two fractions give train and validation; three add test. Fractions must sum to 1.
    """
    if len(fractions) not in (2, 3) or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise InvalidInputError(
            f"fractions must be 2 or 3 non-negative numbers summing to 1, got {fractions}"
        )
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    bounds, total = [0], 0.0
    for fraction in fractions:
        total += fraction
        bounds.append(round(total * len(records)))
    bounds[-1] = len(records)
    return {
        name: [records[i] for i in order[bounds[k] : bounds[k + 1]]]
        for k, name in enumerate(SPLIT_NAMES[: len(fractions)])
    }
