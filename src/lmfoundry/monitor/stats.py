"""Two-sample tests for drift, in numpy: permutation p-values, MMD on embeddings, KS on scalars,
two-proportion z-tests on rates, k-means for request clusters.

Why permutation tests: traffic windows are small (tens to a few thousand requests) and the
statistics (MMD, KS, total variation) have awkward null distributions; shuffling the window
labels gives an exact-size test with no distributional assumption. p = (1 + #{permuted >= observed})
/ (1 + n_permutations), so it is never 0 and 1000 permutations resolve p down to ~0.001.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lmfoundry.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np


def permutation_pvalue(
    statistic: Callable[[np.ndarray], float], n_a: int, n_b: int, n_permutations: int, seed: int
) -> tuple[float, float]:
    """(observed, p): `statistic(labels)` gets a boolean array, True for members of window b;
    the observed labels are the first n_a False, the next n_b True."""
    import numpy as np

    labels = np.zeros(n_a + n_b, dtype=bool)
    labels[n_a:] = True
    observed = statistic(labels)
    rng = np.random.default_rng(seed)
    exceed = sum(statistic(rng.permutation(labels)) >= observed - 1e-12 for _ in range(n_permutations))
    return observed, (1 + exceed) / (1 + n_permutations)


def rbf_kernel(x: np.ndarray) -> np.ndarray:
    """Gaussian kernel matrix with the median heuristic bandwidth (median pairwise squared distance)."""
    import numpy as np

    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    off_diagonal = d2[~np.eye(len(x), dtype=bool)]
    scale = float(np.median(off_diagonal)) if off_diagonal.size else 1.0
    return np.asarray(np.exp(-d2 / max(scale, 1e-12)))


def mmd_test(a: np.ndarray, b: np.ndarray, n_permutations: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(MMD², p): maximum mean discrepancy between two sets of vectors (biased estimate, RBF kernel)."""
    import numpy as np

    _check_sizes(len(a), len(b), "embedding")
    kernel = rbf_kernel(np.vstack([a, b]).astype(np.float64))

    def mmd2(in_b: np.ndarray) -> float:
        wa, wb = (~in_b) / (~in_b).sum(), in_b / in_b.sum()
        w = wa - wb
        return float(w @ kernel @ w)

    return permutation_pvalue(mmd2, len(a), len(b), n_permutations, seed)


def ks_test(
    a: Sequence[float], b: Sequence[float], n_permutations: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(KS statistic, p): the largest gap between the two empirical CDFs, p by permutation."""
    import numpy as np

    _check_sizes(len(a), len(b), "value")
    values = np.asarray([*a, *b], dtype=np.float64)
    grid = np.unique(values)
    below = values[:, None] <= grid[None, :]  # (n, grid): row i counts toward the CDF at each point

    def ks(in_b: np.ndarray) -> float:
        cdf_a = below[~in_b].mean(axis=0)
        cdf_b = below[in_b].mean(axis=0)
        return float(np.max(np.abs(cdf_a - cdf_b)))

    return permutation_pvalue(ks, len(a), len(b), n_permutations, seed)


def category_test(
    a: Sequence[str], b: Sequence[str], n_permutations: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(total variation distance, p) between the category shares of two samples."""
    import numpy as np

    _check_sizes(len(a), len(b), "category")
    names = sorted(set(a) | set(b))
    codes = np.asarray([names.index(v) for v in [*a, *b]])
    onehot = np.eye(len(names))[codes]

    def tv(in_b: np.ndarray) -> float:
        return float(0.5 * np.abs(onehot[~in_b].mean(axis=0) - onehot[in_b].mean(axis=0)).sum())

    return permutation_pvalue(tv, len(a), len(b), n_permutations, seed)


def two_proportion_test(x_a: int, n_a: int, x_b: int, n_b: int) -> float:
    """Two-sided p of the pooled z-test that two rates are equal (1.0 when both are 0 or 1)."""
    _check_sizes(n_a, n_b, "rate")
    pooled = (x_a + x_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance <= 0:
        return 1.0
    z = (x_b / n_b - x_a / n_a) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))


def binomial_tail(successes: int, n: int, p: float) -> float:
    """P(X >= successes) for X ~ Binomial(n, p): how surprising that many novel requests are."""
    return min(1.0, sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(successes, n + 1)))


def kmeans(x: np.ndarray, k: int, seed: int = 0, iterations: int = 50) -> np.ndarray:
    """Centroids of k-means (k-means++ seeding, Lloyd iterations) over the rows of `x`."""
    import numpy as np

    if not 1 <= k <= len(x):
        raise InvalidInputError(f"k-means needs 1 <= k <= {len(x)} points, got k={k}")
    rng = np.random.default_rng(seed)
    centroids = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.asarray(centroids)[None]) ** 2).sum(-1), axis=1)
        total = d2.sum()
        pick = rng.integers(len(x)) if total <= 0 else rng.choice(len(x), p=d2 / total)
        centroids.append(x[pick])
    c = np.asarray(centroids, dtype=np.float64)
    for _ in range(iterations):
        assign = nearest_distance(x, c)[1]
        moved = np.asarray([x[assign == j].mean(axis=0) if (assign == j).any() else c[j] for j in range(k)])
        if np.allclose(moved, c):
            break
        c = moved
    return c


def nearest_distance(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance to the nearest centroid, its index) for each row of `x`."""
    import numpy as np

    d = np.sqrt(np.maximum(((x[:, None, :] - centroids[None]) ** 2).sum(-1), 0.0))
    index = d.argmin(axis=1)
    return d[np.arange(len(x)), index], index


def _check_sizes(n_a: int, n_b: int, what: str) -> None:
    if n_a < 1 or n_b < 1:
        raise InvalidInputError(f"a {what} drift test needs at least one item in each window")
