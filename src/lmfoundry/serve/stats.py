"""`lmf serve stats`: fetch a server's Prometheus /metrics and summarise latency percentiles.

Quantiles are *estimated from histogram buckets* the way Prometheus' `histogram_quantile` does:
find the bucket where the cumulative count crosses rank q x total and interpolate linearly inside
it. The estimate is only as fine as the bucket bounds (see `metrics.LATENCY_BUCKETS`); a quantile
that falls in the +Inf bucket is reported as the largest finite bound.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections import defaultdict
from typing import Any

from lmfoundry.errors import LmfError

QUANTILES = (0.5, 0.95, 0.99)
LATENCIES = ("lmf_ttft_seconds", "lmf_tpot_seconds", "lmf_e2e_seconds", "lmf_queue_seconds")
TOKENS = ("lmf_prompt_tokens", "lmf_completion_tokens")


def fetch_metrics(url: str, *, api_key: str | None = None, timeout_s: float = 10.0) -> str:
    endpoint = url.rstrip("/") + "/metrics"
    if not endpoint.startswith(("http://", "https://")):
        raise LmfError(f"--url must start with http:// or https:// (got {url!r})")
    request = urllib.request.Request(
        endpoint, headers={"Authorization": f"Bearer {api_key}"} if api_key else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (http(s) only, checked)
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        raise LmfError(f"{endpoint} answered {exc.code} (an API key may be needed: --api-key)") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise LmfError(f"cannot reach {endpoint}: {exc}") from exc


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Estimate quantile `q` from cumulative (upper_bound, count) pairs (+Inf last). None if empty."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower  # beyond the last finite bound: the best we can say
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def parse_histograms(text: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """{(metric, model, adapter): {"buckets": [(le, cumulative)], "sum": s, "count": n}}."""
    from prometheus_client.parser import text_string_to_metric_families

    series: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"buckets": [], "sum": 0.0, "count": 0.0}
    )
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        for sample in family.samples:
            key = (family.name, sample.labels.get("model", ""), sample.labels.get("adapter", ""))
            if sample.name.endswith("_bucket"):
                series[key]["buckets"].append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_sum"):
                series[key]["sum"] = sample.value
            elif sample.name.endswith("_count"):
                series[key]["count"] = sample.value
    return dict(series)


def summarise(text: str) -> list[dict[str, Any]]:
    """One row per (model, adapter): request count, latency quantiles (seconds), mean token counts."""
    histograms = parse_histograms(text)
    per_model = LATENCIES + TOKENS  # other histograms (per rollout variant) have no model/adapter labels
    groups = sorted({(model, adapter) for (name, model, adapter) in histograms if name in per_model})
    rows = []
    for model, adapter in groups:
        row: dict[str, Any] = {"model": model, "adapter": adapter}
        e2e = histograms.get(("lmf_e2e_seconds", model, adapter))
        row["requests"] = int(e2e["count"]) if e2e else 0
        for name in LATENCIES:
            h = histograms.get((name, model, adapter))
            short = name.removeprefix("lmf_").removesuffix("_seconds")
            for q in QUANTILES:
                row[f"{short}_p{round(q * 100)}"] = histogram_quantile(q, h["buckets"]) if h else None
        for name in TOKENS:
            h = histograms.get((name, model, adapter))
            row[name.removeprefix("lmf_") + "_mean"] = h["sum"] / h["count"] if h and h["count"] else None
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no requests recorded yet\n"
    header = f"{'model':<24} {'adapter':<14} {'reqs':>6}  " + "  ".join(
        f"{m + ' p50/p95/p99 (ms)':>26}" for m in ("ttft", "tpot", "e2e", "queue")
    )
    lines = [header]
    for row in rows:
        cells = []
        for metric in ("ttft", "tpot", "e2e", "queue"):
            values = [row[f"{metric}_p{p}"] for p in (50, 95, 99)]
            cells.append(f"{'/'.join('-' if v is None else f'{v * 1000:.0f}' for v in values):>26}")
        lines.append(f"{row['model']:<24} {row['adapter']:<14} {row['requests']:>6}  " + "  ".join(cells))
    lines.append("(quantiles estimated from histogram buckets, linear interpolation)")
    return "\n".join(lines) + "\n"
