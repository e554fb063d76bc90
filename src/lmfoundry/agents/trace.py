"""MLflow tracing of agent runs: one trace per run, a span per step, model call and tool call.

The trace is what makes an agent's failure explainable after the fact (which tool it called, with
what, and what came back), so it goes to the same tracking store as every other lmfoundry run
(`$LMF_TRACKING_URI`, else the sqlite db under `$LMF_HOME/mlflow`, experiment `lmf-agent`).
A disabled tracer hands out spans that do nothing, so the loop has one code path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

from lmfoundry.plugins import require
from lmfoundry.track.runs import client, experiment_id, tracking_uri

EXPERIMENT_KIND = "agent"


class Span(Protocol):
    def set_inputs(self, inputs: Any) -> None: ...

    def set_outputs(self, outputs: Any) -> None: ...

    def set_attributes(self, attributes: dict[str, Any]) -> None: ...


class _NoSpan:
    def set_inputs(self, inputs: Any) -> None:
        pass

    def set_outputs(self, outputs: Any) -> None:
        pass

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        pass


class Tracer:
    """Spans recorded in MLflow when `enabled`, else no-ops."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.trace_id: str | None = None
        if enabled:
            mlflow = require("mlflow", extra="track")
            mlflow.set_tracking_uri(tracking_uri())
            mlflow.set_experiment(experiment_id=experiment_id(client(), EXPERIMENT_KIND))

    @contextlib.contextmanager
    def span(self, name: str, span_type: str, inputs: Any = None) -> Iterator[Span]:
        """A span of `span_type` (AGENT, CHAT_MODEL, TOOL, CHAIN) around the block."""
        if not self.enabled:
            yield _NoSpan()
            return
        import mlflow

        with mlflow.start_span(name=name, span_type=span_type) as span:
            if inputs is not None:
                span.set_inputs(inputs)
            if self.trace_id is None:
                self.trace_id = str(span.trace_id)
            yield span

    def flush(self) -> None:
        """Wait until the trace is written (MLflow may log traces in the background)."""
        if self.enabled:
            import mlflow

            flush = getattr(mlflow, "flush_trace_async_logging", None)
            if flush is not None:
                flush()
