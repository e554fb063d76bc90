"""Prometheus metrics per app, quantile estimation from buckets, and `lmf serve stats`."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.serve.http_server import running_server
from lmfoundry.serve.service import ServedModel, ServeOptions
from lmfoundry.serve.stats import histogram_quantile, parse_histograms, summarise


def test_histogram_quantile_hand_computed() -> None:
    buckets = [(0.1, 2.0), (0.2, 6.0), (float("inf"), 10.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.1 * (5 - 2) / (6 - 2))
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.1 * 1 / 2)
    assert histogram_quantile(0.99, buckets) == 0.2  # in +Inf: the largest finite bound
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None


def test_estimates_land_in_the_bucket_of_the_true_quantile() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from lmfoundry.serve.metrics import LATENCY_BUCKETS

    registry = CollectorRegistry()
    hist = Histogram("lmf_e2e_seconds", "x", ["model", "adapter"], buckets=LATENCY_BUCKETS, registry=registry)
    rng = random.Random(0)
    samples = sorted(rng.lognormvariate(-1.5, 1.0) for _ in range(2000))
    for value in samples:
        hist.labels(model="m", adapter="none").observe(value)
    parsed = parse_histograms(generate_latest(registry).decode())
    buckets = parsed[("lmf_e2e_seconds", "m", "none")]["buckets"]
    bounds = [0.0, *LATENCY_BUCKETS]
    for q in (0.5, 0.95, 0.99):
        true = samples[int(q * len(samples)) - 1]
        estimate = histogram_quantile(q, buckets)
        assert estimate is not None
        i = next(k for k in range(1, len(bounds)) if true <= bounds[k])
        assert bounds[i - 1] <= estimate <= bounds[i], (q, true, estimate)


def test_metrics_are_labelled_by_model_and_adapter(served: ServedModel, options: ServeOptions) -> None:
    from fastapi.testclient import TestClient

    from lmfoundry.serve.app import create_app

    client = TestClient(create_app(served, options))  # a fresh registry: counts start at zero
    for _ in range(3):
        client.post(
            "/v1/completions", json={"model": "tiny", "prompt": "Hi", "max_tokens": 4, "temperature": 0}
        )
    client.post("/v1/completions", json={"model": "nope", "prompt": "Hi"})
    text = client.get("/metrics").text
    rows = summarise(text)
    assert [(r["model"], r["adapter"], r["requests"]) for r in rows] == [("tiny", "none", 3)]
    row = rows[0]
    assert row["ttft_p50"] is not None and row["e2e_p99"] >= row["ttft_p50"] * 0
    assert 1 <= row["completion_tokens_mean"] <= 4
    assert 'lmf_requests_total{endpoint="/v1/completions",status="200"} 3.0' in text
    assert 'lmf_requests_total{endpoint="/v1/completions",status="404"} 1.0' in text
    assert "lmf_queue_depth 0.0" in text


def test_lmf_serve_stats_against_a_running_server(
    served: ServedModel, options: ServeOptions, capsys: Any
) -> None:
    import httpx

    from lmfoundry.serve.app import create_app

    with running_server(create_app(served, options, api_keys=["k"])) as url:
        for prompt in ("Hi", "The quick brown fox"):
            httpx.post(
                f"{url}/v1/completions",
                headers={"Authorization": "Bearer k"},
                json={"model": "tiny", "prompt": prompt, "max_tokens": 3},
                timeout=30,
            )
        assert main(["serve", "stats", "--url", url, "--api-key", "k", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["quantiles"] == "estimated from histogram buckets"
        assert [(s["model"], s["requests"]) for s in report["series"]] == [("tiny", 2)]
        assert main(["serve", "stats", "--url", url, "--api-key", "k"]) == 0
        table = capsys.readouterr().out
        assert "tiny" in table and "estimated from histogram buckets" in table
        assert main(["serve", "stats", "--url", url]) == 1  # no key: a one-line error, not a traceback
        assert "API key" in capsys.readouterr().err


def test_stats_on_an_unreachable_url_is_a_clean_error(capsys: Any) -> None:
    assert main(["serve", "stats", "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot reach" in capsys.readouterr().err
    assert main(["serve", "stats", "--url", "ftp://x"]) == 1


def test_a_stream_observed_before_its_handle_finishes_keeps_real_timings() -> None:
    """The HTTP side can record a stream that ended on its last token before the scheduler thread
    calls `finish()`: e2e must still span the generation, and TPOT must not go negative."""
    import time

    from lmfoundry.serve.metrics import ServerMetrics
    from lmfoundry.serve.scheduler import Handle
    from lmfoundry.types import SamplingParams

    metrics = ServerMetrics(queue_depth=lambda: 0, active=lambda: 0)
    handle = Handle([1, 2, 3], SamplingParams(max_new_tokens=4), None, None)
    handle.started_at = handle.submitted_at
    for token in (5, 6):
        handle.push(token)
    time.sleep(0.03)
    handle.push(7, last=True)
    assert handle.finished_at is None
    metrics.observe_generation("m", None, handle, prompt_tokens=3, completion_tokens=3)
    parsed = parse_histograms(metrics.render()[0].decode())
    e2e = parsed[("lmf_e2e_seconds", "m", "none")]
    tpot = parsed[("lmf_tpot_seconds", "m", "none")]
    assert e2e["sum"] >= 0.03
    assert tpot["sum"] > 0
