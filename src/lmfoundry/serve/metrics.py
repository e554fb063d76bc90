"""Prometheus metrics for the server, one registry per app (so two apps in one process, as in
tests, never share counters). Latency and token histograms are labelled by model and adapter.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmfoundry.serve.scheduler import Handle

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TOKEN_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
NO_ADAPTER = "none"

HISTOGRAMS = {
    "lmf_ttft_seconds": ("time from request arrival to the first generated token", LATENCY_BUCKETS),
    "lmf_tpot_seconds": ("mean time per output token after the first", LATENCY_BUCKETS),
    "lmf_e2e_seconds": ("time from request arrival to the last token", LATENCY_BUCKETS),
    "lmf_queue_seconds": ("time a request waited before its prefill started", LATENCY_BUCKETS),
    "lmf_prompt_tokens": ("prompt tokens per generation", TOKEN_BUCKETS),
    "lmf_completion_tokens": ("generated tokens per generation", TOKEN_BUCKETS),
}


class ServerMetrics:
    def __init__(self, queue_depth: Callable[[], float], active: Callable[[], float]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.histograms: dict[str, Any] = {
            name: Histogram(name, doc, ["model", "adapter"], buckets=buckets, registry=self.registry)
            for name, (doc, buckets) in HISTOGRAMS.items()
        }
        self.requests = Counter(
            "lmf_requests", "HTTP requests answered", ["endpoint", "status"], registry=self.registry
        )
        Gauge("lmf_queue_depth", "requests waiting for a batch slot", registry=self.registry).set_function(
            queue_depth
        )
        Gauge("lmf_active_sequences", "sequences being decoded", registry=self.registry).set_function(active)
        add_process_metrics(self.registry)

    def observe_generation(
        self, model: str, adapter: str | None, handle: Handle, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Record one finished generation's timings (taken by the scheduler) and token counts."""
        labels = {"model": model, "adapter": adapter or NO_ADAPTER}
        h = self.histograms
        # A stream can end on its last token before the scheduler thread marks the handle finished:
        # then now is the end (the submit time would record e2e ~0 and a negative TPOT).
        end = handle.finished_at or time.perf_counter()
        if handle.started_at is not None:
            h["lmf_queue_seconds"].labels(**labels).observe(handle.started_at - handle.submitted_at)
        if handle.first_token_at is not None:
            h["lmf_ttft_seconds"].labels(**labels).observe(handle.first_token_at - handle.submitted_at)
            if completion_tokens > 1:
                tpot = (end - handle.first_token_at) / (completion_tokens - 1)
                h["lmf_tpot_seconds"].labels(**labels).observe(tpot)
        h["lmf_e2e_seconds"].labels(**labels).observe(end - handle.submitted_at)
        h["lmf_prompt_tokens"].labels(**labels).observe(prompt_tokens)
        h["lmf_completion_tokens"].labels(**labels).observe(completion_tokens)

    def count(self, endpoint: str, status: int) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def add_process_metrics(registry: Any, platform: str = sys.platform) -> None:
    """The server process's CPU time and memory (`process_cpu_seconds_total`,
    `process_resident_memory_bytes`, ...): prometheus_client's collector reads /proc on Linux;
    elsewhere psutil gives the same names, so one dashboard fits both."""
    from prometheus_client import ProcessCollector

    if platform.startswith("linux"):
        ProcessCollector(registry=registry)
    else:
        registry.register(PsutilProcessCollector())


class PsutilProcessCollector:
    """The main process metrics of prometheus_client's Linux collector, measured with psutil."""

    def collect(self) -> Iterator[Any]:
        import psutil
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        process = psutil.Process()
        with process.oneshot():
            times, memory = process.cpu_times(), process.memory_info()
            started = process.create_time()
        yield CounterMetricFamily(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            times.user + times.system,
        )
        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes.", memory.rss)
        yield GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.", memory.vms)
        yield GaugeMetricFamily(
            "process_start_time_seconds", "Start time of the process since unix epoch in seconds.", started
        )
