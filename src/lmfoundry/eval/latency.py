"""Latency and cost arithmetic: TTFT, TPOT, end-to-end estimates, percentiles, cost per 1M tokens.

Pure Python so the runner and the server's statistics can share it without numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lmfoundry.errors import InvalidInputError

DEFAULT_PRICE_PER_HOUR = 0.10
"""USD per hour of the hardware the model runs on; the default is a small cloud CPU VM."""


@dataclass(frozen=True)
class Timing:
    """The timings one generation reports."""

    ttft_s: float
    total_s: float
    completion_tokens: int

    @property
    def tpot_s(self) -> float:
        return tpot(self.ttft_s, self.total_s, self.completion_tokens)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.total_s if self.total_s > 0 else 0.0


def tpot(ttft_s: float, total_s: float, completion_tokens: int) -> float:
    """Time per output token after the first: (total - ttft) / (tokens - 1); 0 for <= 1 token."""
    if completion_tokens <= 1:
        return 0.0
    return max(total_s - ttft_s, 0.0) / (completion_tokens - 1)


def e2e_latency(ttft_s: float, tpot_s: float, output_tokens: int) -> float:
    """Estimated end-to-end latency of a request: TTFT + TPOT x output tokens."""
    return ttft_s + tpot_s * output_tokens


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics.

    Matches numpy's default (`method="linear"`).
    """
    if not values:
        raise InvalidInputError("percentile of an empty list")
    if not 0 <= q <= 100:
        raise InvalidInputError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """mean, p50, p95, p99 of a list of measurements."""
    return {
        "mean": sum(values) / len(values) if values else 0.0,
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
    }


def cost_per_1m_tokens(price_per_hour: float, tokens_per_s: float) -> float:
    """USD per million generated tokens on hardware rented at `price_per_hour` USD."""
    if price_per_hour < 0:
        raise InvalidInputError(f"price per hour must be >= 0, got {price_per_hour}")
    if tokens_per_s <= 0:
        return math.inf
    return price_per_hour / (tokens_per_s * 3600.0) * 1_000_000


def latency_summary(timings: Sequence[Timing], price_per_hour: float = DEFAULT_PRICE_PER_HOUR) -> dict:
    """Percentile summaries of TTFT, TPOT, end-to-end time and tokens/s, plus throughput and cost.

    Throughput is total generated tokens over total generation time (requests run one after
    another), which is what the hardware bill pays for.
    """
    if not timings:
        raise InvalidInputError("latency summary needs at least one timing")
    total_time = sum(t.total_s for t in timings)
    total_tokens = sum(t.completion_tokens for t in timings)
    throughput = total_tokens / total_time if total_time > 0 else 0.0
    cost = cost_per_1m_tokens(price_per_hour, throughput)
    return {
        "n": len(timings),
        "ttft_s": summarize([t.ttft_s for t in timings]),
        "tpot_s": summarize([t.tpot_s for t in timings]),
        "e2e_s": summarize([t.total_s for t in timings]),
        "tokens_per_s": summarize([t.tokens_per_s for t in timings]),
        "throughput_tokens_per_s": throughput,
        "price_per_hour": price_per_hour,
        "cost_per_1m_tokens": cost if math.isfinite(cost) else None,  # None: nothing was generated
    }
