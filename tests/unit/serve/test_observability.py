"""Observability of the server: OpenTelemetry spans per request (the SDK's in-memory exporter),
process CPU and memory metrics, and a Grafana dashboard whose every query names a real metric."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.serve.app import create_app
from lmfoundry.serve.rollout_spec import parse_rollout
from lmfoundry.serve.service import ServedModel, ServeOptions
from lmfoundry.serve.stats import summarise
from lmfoundry.serve.tracing import provider_from_config

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "lmf-serve-dashboard.json"
BASE_ONLY = parse_rollout({"variants": [{"name": "champion", "weight": 1}]})
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
}


def _chat(client: Any) -> Any:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    return client.post("/v1/chat/completions", json=body)


def test_each_request_is_a_span_with_status_and_variant(served: ServedModel, options: ServeOptions) -> None:
    from fastapi.testclient import TestClient
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = TestClient(create_app(served, options, rollout=BASE_ONLY, tracer_provider=provider))
    assert _chat(client).status_code == 200
    assert client.post("/v1/chat/completions", json={"model": "nope", "messages": []}).status_code in (
        400,
        404,
    )
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["POST /v1/chat/completions"] * 2
    ok, bad = (dict(s.attributes or {}) for s in spans)
    assert ok["http.response.status_code"] == 200 and ok["lmf.variant"] == "champion"
    assert ok["lmf.endpoint"] == "/v1/chat/completions"
    assert bad["http.response.status_code"] in (400, 404) and "lmf.variant" not in bad
    assert spans[0].kind.name == "SERVER"


def test_tracing_is_configured_by_flag_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert provider_from_config(None) is None  # no exporter configured: no tracing, nothing imported
    provider = provider_from_config("http://127.0.0.1:4318")
    assert provider is not None and provider.resource.attributes["service.name"] == "lmf-serve"
    provider.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "summarizer")
    from_env = provider_from_config(None)
    assert from_env is not None and from_env.resource.attributes["service.name"] == "summarizer"
    from_env.shutdown()


def _exported_names(metrics_text: str) -> set[str]:
    """Every series name a scrape of this text can hold (from the families, samples or not)."""
    from prometheus_client.parser import text_string_to_metric_families

    names = set()
    for family in text_string_to_metric_families(metrics_text):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(
            family.type, ("",)
        )
        names |= {family.name + suffix for suffix in suffixes}
    return names


def _metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers that are not functions, keywords, label
    names (inside `{}` or `by (...)`) or durations."""
    stripped = re.sub(r'"[^"]*"', "", expr)
    stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", stripped)
    stripped = re.sub(r"\b(by|without)\s*\([^)]*\)", "", stripped)
    tokens = {m.group() for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", stripped)}
    functions = {m.group(1) for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\(", stripped)}
    return tokens - functions - PROMQL_WORDS


def test_process_metrics_and_every_dashboard_query_name_real_metrics(
    served: ServedModel, options: ServeOptions
) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(create_app(served, options, rollout=BASE_ONLY))
    assert _chat(client).headers["X-LMF-Variant"] == "champion"
    text = client.get("/metrics").text
    assert re.search(r"^process_resident_memory_bytes [0-9.e+]+$", text, re.M)
    assert re.search(r"^process_cpu_seconds_total [0-9.e+]+$", text, re.M)
    assert [(row["model"], row["adapter"]) for row in summarise(text)] == [
        ("tiny", "none")
    ]  # no variant rows
    exported = _exported_names(text)
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*(_metric_names(e) for e in exprs))
    assert {
        "lmf_variant_requests_total",
        "lmf_variant_e2e_seconds_bucket",
        "process_cpu_seconds_total",
    } <= used
    assert used <= exported, f"dashboard queries name metrics the server does not export: {used - exported}"
    assert _metric_names('sum by (variant, le) (rate(x_bucket{status=~"5.."}[5m])) / y') == {"x_bucket", "y"}


def test_psutil_collector_matches_the_linux_process_metrics() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from lmfoundry.serve.metrics import add_process_metrics

    linux, other = CollectorRegistry(), CollectorRegistry()
    add_process_metrics(linux, platform="linux")
    add_process_metrics(other, platform="darwin")  # what macOS and Windows get: psutil
    linux_text, other_text = generate_latest(linux).decode(), generate_latest(other).decode()
    values = dict(line.split(" ") for line in other_text.splitlines() if not line.startswith("#"))
    assert set(values) == {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_start_time_seconds",
    }
    assert set(values) <= _exported_names(linux_text)  # one dashboard fits both
    assert (
        float(values["process_resident_memory_bytes"]) > 1e6
        and float(values["process_cpu_seconds_total"]) > 0
    )
