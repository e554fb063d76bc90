"""Latency arithmetic: TPOT, end-to-end estimate, percentiles (vs numpy), cost per 1M tokens."""

from __future__ import annotations

import math

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.eval import latency


def test_tpot_and_e2e() -> None:
    # 11 tokens in 1.2 s with the first after 0.2 s: ten more tokens in 1.0 s
    assert latency.tpot(0.2, 1.2, 11) == pytest.approx(0.1)
    assert latency.tpot(0.2, 0.2, 1) == 0.0
    assert latency.e2e_latency(0.2, 0.1, 50) == pytest.approx(5.2)
    timing = latency.Timing(ttft_s=0.5, total_s=2.5, completion_tokens=5)
    assert timing.tpot_s == pytest.approx(0.5)
    assert timing.tokens_per_s == pytest.approx(2.0)


def test_percentiles_match_numpy() -> None:
    import numpy as np

    values = [0.9, 0.1, 0.5, 2.0, 0.3, 0.7, 1.1]
    for q in (0, 50, 95, 99, 100):
        assert latency.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    summary = latency.summarize(values)
    assert summary["mean"] == pytest.approx(float(np.mean(values)))
    assert summary["p95"] == pytest.approx(float(np.percentile(values, 95)))


def test_cost_per_million_tokens() -> None:
    # 1 USD/hour at 100 tokens/s = 360,000 tokens per USD -> 1e6 / 360000 USD
    assert latency.cost_per_1m_tokens(1.0, 100.0) == pytest.approx(1e6 / 360_000)
    assert math.isinf(latency.cost_per_1m_tokens(1.0, 0.0))
    with pytest.raises(LmfError):
        latency.cost_per_1m_tokens(-1.0, 10.0)


def test_latency_summary() -> None:
    timings = [latency.Timing(0.1, 1.1, 11), latency.Timing(0.3, 0.3, 1), latency.Timing(0.2, 2.2, 21)]
    summary = latency.latency_summary(timings, price_per_hour=0.36)
    assert summary["n"] == 3
    assert summary["throughput_tokens_per_s"] == pytest.approx(33 / 3.6)
    assert summary["cost_per_1m_tokens"] == pytest.approx(0.36 / (33 / 3.6 * 3600) * 1e6)
    assert summary["ttft_s"]["p50"] == pytest.approx(0.2)
    assert summary["tpot_s"]["p50"] == pytest.approx(0.1)
    assert latency.latency_summary([latency.Timing(0.1, 0.1, 0)])["cost_per_1m_tokens"] is None


def test_percentile_errors() -> None:
    with pytest.raises(LmfError):
        latency.percentile([], 50)
    with pytest.raises(LmfError):
        latency.percentile([1.0], 101)
