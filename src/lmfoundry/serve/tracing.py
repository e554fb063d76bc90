"""OpenTelemetry traces of the server's HTTP requests, when an exporter is configured.

`lmf serve --otlp-endpoint URL`, or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (and
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME`) environment variables, turn tracing on:
one server span per request, named `METHOD /path`, with the status, the bounded endpoint label and,
for a rollout, the variant that answered. Spans go out over OTLP/HTTP in batches (the `otel`
extra). Without either, nothing is imported and no middleware is added.

The provider is the app's own (not the global one), so two apps in one process, as in tests, never
share spans; `create_app(tracer_provider=...)` accepts any SDK provider (tests use the SDK's
in-memory exporter).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from lmfoundry.plugins import require
from lmfoundry.serve.middleware import StatusRecorder, endpoint_label
from lmfoundry.serve.rollout import CURRENT_ROUTE

if TYPE_CHECKING:
    from fastapi import FastAPI

ENV_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def provider_from_config(endpoint: str | None = None) -> Any | None:
    """A TracerProvider exporting over OTLP/HTTP to `endpoint` (a collector's base URL, e.g.
    http://127.0.0.1:4318) or to the one the environment names; None when neither is set."""
    if not endpoint and not any(os.environ.get(name) for name in ENV_ENDPOINTS):
        return None
    require("opentelemetry.sdk.trace", extra="otel", package="opentelemetry-sdk")
    exporter_module = require(
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        extra="otel",
        package="opentelemetry-exporter-otlp-proto-http",
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # the exporter reads the OTEL_* variables itself; a flag's base URL gets the traces path added
    kwargs = {"endpoint": endpoint.rstrip("/") + "/v1/traces"} if endpoint else {}
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "lmf-serve")})
    )
    provider.add_span_processor(BatchSpanProcessor(exporter_module.OTLPSpanExporter(**kwargs)))
    return provider


class TracingMiddleware:
    """One server span per HTTP request (outermost, so it times everything the server does)."""

    def __init__(self, app: Any, provider: Any) -> None:
        self.app = app
        self.tracer = provider.get_tracer("lmfoundry.serve")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry.trace import SpanKind, Status, StatusCode

        method, path = scope.get("method", "GET"), scope["path"]
        recorder = StatusRecorder(send)
        with self.tracer.start_as_current_span(f"{method} {path}", kind=SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.path", path)
            span.set_attribute("lmf.endpoint", endpoint_label(path))
            route = _RouteProbe()
            try:
                await self.app(scope, receive, route.wrap(recorder))
            finally:
                span.set_attribute("http.response.status_code", recorder.status)
                if route.variant is not None:
                    span.set_attribute("lmf.variant", route.variant)
                if recorder.status >= 500:
                    span.set_status(Status(StatusCode.ERROR))


class _RouteProbe:
    """Reads the rollout variant of the request when its response starts (the rollout middleware
    runs inside this one, in the same task, so its route is visible from `send`)."""

    def __init__(self) -> None:
        self.variant: str | None = None

    def wrap(self, send: Any) -> Any:
        async def probing_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                current = CURRENT_ROUTE.get()
                self.variant = current.variant if current is not None else None
            await send(message)

        return probing_send


def add_tracing(app: FastAPI, provider: Any | None) -> None:
    """Trace the app's requests with `provider` (nothing when None); call after every other middleware."""
    if provider is not None:
        app.add_middleware(TracingMiddleware, provider=provider)
