"""`lmf serve MODEL`: the OpenAI-compatible server; `lmf serve stats`: latency percentiles from /metrics."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lmfoundry.cli.common import add_json_flag, plugin_name, print_result
from lmfoundry.errors import InvalidInputError
from lmfoundry.paths import lmf_home
from lmfoundry.serve.app import create_app
from lmfoundry.serve.canary import load_canary_judge
from lmfoundry.serve.capture import CaptureStore
from lmfoundry.serve.guardrails import load_guardrails
from lmfoundry.serve.http_server import serve_forever
from lmfoundry.serve.middleware import load_api_keys
from lmfoundry.serve.rollout_spec import load_rollout
from lmfoundry.serve.service import ServedModel, ServeOptions, load_for_serving, omp_wait_policy
from lmfoundry.serve.stats import fetch_metrics, format_table, summarise
from lmfoundry.serve.tracing import provider_from_config

USAGE = "lmf serve MODEL [options]  |  lmf serve stats [--url URL] [--api-key KEY] [--json]"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API (or `serve stats` to summarise its metrics)",
        usage=USAGE,
        description="Serve MODEL with /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models, "
        "per-request LoRA adapters (model='NAME:ADAPTER'), /v1/adapters and Prometheus /metrics. The "
        "transformers and llama_cpp backends batch concurrent requests (continuous batching; "
        "--max-batch 1 serves one at a time). `lmf serve stats` fetches /metrics from a running server and prints "
        "p50/p95/p99 latencies per model and adapter.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "model", help="model to serve (store name, packaged model, profile, directory, .gguf), or `stats`"
    )
    p.add_argument(
        "--backend",
        default="auto",
        type=plugin_name("backend", "auto"),
        help=(
            "auto: llama.cpp (a float16 GGUF of fp32 weights, or the model's own GGUF) unless the server "
            "serves LoRA adapters (--adapter, --adapter-root, --rollout), then transformers; "
            "transformers batches requests and mixes adapters per request; llama_cpp batches requests "
            "(GGUF, one adapter for all); or a backend a plugin adds"
        ),
    )
    p.add_argument("--served-model-name", help="the id clients send as `model` (default: the model name)")
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (0.0.0.0 exposes it to the network)"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, help="CPU threads for the model (default: all cores)")
    _add_adapter_options(p)
    _add_limit_options(p)
    _add_batch_options(p)
    _add_capture_options(p)
    _add_guardrail_options(p)
    _add_rollout_options(p)
    group = p.add_argument_group("stats (with `lmf serve stats`)")
    group.add_argument("--url", default="http://127.0.0.1:8000", help="server whose /metrics to summarise")
    add_json_flag(p)
    p.set_defaults(handler=_dispatch)


def _add_adapter_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("adapters")
    group.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="LoRA adapter served as MODEL:NAME (repeatable)",
    )
    group.add_argument(
        "--adapter-root",
        action="append",
        default=[],
        metavar="DIR",
        help="directory under which POST /v1/adapters may load adapters (repeatable; none = disabled)",
    )
    group.add_argument("--max-adapters", type=int, default=8, help="LRU cap on adapters loaded at once")


def _add_limit_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("limits and protection")
    group.add_argument("--api-key", action="append", default=[], help="accepted bearer key (repeatable)")
    group.add_argument("--api-keys-file", help="file with one accepted key per line")
    group.add_argument("--max-batch", type=int, default=16, help="requests decoded together")
    group.add_argument(
        "--row-context",
        type=int,
        default=1024,
        help="llama_cpp: KV positions per batch row (prompt + new tokens); longer requests run alone",
    )
    group.add_argument(
        "--prefix-cache",
        type=int,
        default=4,
        help="llama_cpp: finished sequences kept so prompts sharing their prefix skip recomputing it",
    )
    group.add_argument("--max-queue", type=int, default=64, help="waiting requests before answering 429")
    group.add_argument(
        "--max-tokens", type=int, default=2048, help="largest max_tokens a request may ask for"
    )
    group.add_argument(
        "--default-max-tokens", type=int, help="chat max_tokens when unset (default: min(512, --max-tokens))"
    )
    group.add_argument("--max-n", type=int, default=8, help="largest n (choices per request)")
    group.add_argument(
        "--timeout", type=float, default=300.0, help="per-request timeout in seconds (0 = none)"
    )
    group.add_argument("--max-body-bytes", type=int, default=1_000_000, help="request size limit")
    group.add_argument(
        "--embedder",
        default="all-MiniLM-L6-v2",
        help="sentence-transformers model for /v1/embeddings ('none' disables it)",
    )


def _add_batch_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("batch jobs (/v1/files, /v1/batches)")
    group.add_argument(
        "--batch-dir",
        help="where uploaded files, batch state and results live; unfinished batches resume from here "
        "after a restart (default: $LMF_HOME/serve/batches; 'none' disables batch jobs)",
    )
    group.add_argument(
        "--max-file-bytes", type=int, default=64_000_000, help="size limit of a /v1/files upload"
    )


def _add_capture_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("capture")
    group.add_argument("--capture", metavar="DB", help="log requests and responses to this SQLite file")
    group.add_argument(
        "--redact",
        action="append",
        default=[],
        metavar="REGEX",
        help="replace matches with [REDACTED] before logging (repeatable)",
    )
    group.add_argument("--capture-max-rows", type=int, help="keep at most this many captured exchanges")
    group.add_argument("--capture-max-days", type=float, help="drop captured exchanges older than this")


def _add_guardrail_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--guardrails",
        metavar="FILE",
        help="YAML guardrails on /v1/chat/completions, /v1/completions, /api/generate and /api/chat: PII "
        "redaction, prompt-injection heuristics, output filters, a safety-classifier hook "
        "(configs/guardrails/default.yaml)",
    )


def _add_rollout_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("rollouts and tracing")
    group.add_argument(
        "--rollout",
        metavar="FILE",
        help="YAML/JSON rollout: variants (registry aliases or adapters) with weights, canary checks, "
        "shadow traffic; change it at run time with PUT /v1/rollout (docs/serving.md)",
    )
    group.add_argument(
        "--canary-judge",
        metavar="NAME",
        help="judge of the rollout canary's min_judge_score check: a canary_judge plugin or a "
        "module:function path, f(question, answer) -> score (docs/serving.md)",
    )
    group.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="send OpenTelemetry traces of requests to this OTLP/HTTP collector (e.g. http://127.0.0.1:4318); "
        "without it, $OTEL_EXPORTER_OTLP_ENDPOINT if set, else no tracing",
    )


def _dispatch(args: argparse.Namespace) -> int:
    return _stats(args) if args.model == "stats" else _serve(args)


def _parse_adapters(specs: list[str]) -> dict[str, str]:
    adapters: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InvalidInputError(f"--adapter expects NAME=PATH, got {spec!r}")
        adapters[name] = path
    return adapters


def _served_name(model: str) -> str:
    path = Path(model)
    if model.endswith(".gguf"):
        return path.stem
    return path.name if path.exists() else model


def _options(args: argparse.Namespace):  # type: ignore[no-untyped-def]

    if args.default_max_tokens is None:
        args.default_max_tokens = min(512, args.max_tokens)
    checks = [
        (args.max_batch >= 1, "--max-batch must be >= 1"),
        (args.row_context >= 16, "--row-context must be >= 16"),
        (args.prefix_cache >= 0, "--prefix-cache must be >= 0"),
        (args.max_queue >= 0, "--max-queue must be >= 0"),
        (
            1 <= args.default_max_tokens <= args.max_tokens,
            "--default-max-tokens must be in [1, --max-tokens]",
        ),
        (args.max_n >= 1, "--max-n must be >= 1"),
        (args.timeout >= 0, "--timeout must be >= 0"),
        (args.max_body_bytes >= 1024, "--max-body-bytes must be >= 1024"),
        (args.max_file_bytes >= 1024, "--max-file-bytes must be >= 1024"),
        (1 <= args.port <= 65535, "--port must be in 1..65535"),
    ]
    for ok, message in checks:
        if not ok:
            raise InvalidInputError(message)
    for root in args.adapter_root:
        if not Path(root).is_dir():
            raise InvalidInputError(f"--adapter-root {root} is not a directory")
    return ServeOptions(
        max_batch=args.max_batch,
        row_context=args.row_context,
        prefix_cache=args.prefix_cache,
        max_queue=args.max_queue,
        max_tokens=args.max_tokens,
        default_max_tokens=args.default_max_tokens,
        max_n=args.max_n,
        timeout_s=args.timeout or None,
        max_body_bytes=args.max_body_bytes,
        max_file_bytes=args.max_file_bytes,
        max_adapters=args.max_adapters,
        adapter_roots=[Path(r) for r in args.adapter_root],
        embedder=None if args.embedder.lower() == "none" else args.embedder,
    )


def _serve(args: argparse.Namespace) -> int:
    serves_adapters = bool(args.adapter or args.adapter_root or args.rollout)
    # before anything can load torch or llama.cpp: their OpenMP runtimes read it once
    os.environ.setdefault("OMP_WAIT_POLICY", omp_wait_policy(args.backend, adapters=serves_adapters))
    from rich.console import Console

    options = _options(args)
    adapters = _parse_adapters(args.adapter)
    keys = load_api_keys(args.api_key, args.api_keys_file)
    capture = _capture(args)
    guardrails = load_guardrails(args.guardrails) if args.guardrails else None
    rollout = load_rollout(args.rollout) if args.rollout else None
    canary_judge = load_canary_judge(args.canary_judge, rollout)
    tracer_provider = provider_from_config(args.otlp_endpoint)
    console = Console(stderr=True)
    with console.status(f"loading {args.model}..."):
        loaded = load_for_serving(
            args.model, backend=args.backend, threads=args.threads, adapters=serves_adapters
        )
        served = ServedModel.create(
            loaded,
            name=args.served_model_name or _served_name(args.model),
            options=options,
            adapters=adapters,
        )
    app = create_app(
        served,
        options,
        api_keys=keys,
        capture=capture,
        close_on_shutdown=True,
        batch_dir=_batch_dir(args),
        rollout=rollout,
        canary_judge=canary_judge,
        tracer_provider=tracer_provider,
        guardrails=guardrails,
    )
    auth = f"{len(keys)} API key(s)" if keys else "no API key (open)"
    console.print(
        f"serving {', '.join(served.model_ids())} on http://{args.host}:{args.port}/v1 "
        f"({auth}; {loaded.backend} backend)"
    )
    if rollout is not None:
        shares = app.state.lmf.rollout.describe()["variants"]
        console.print("rollout: " + ", ".join(f"{v['name']} {v['share']:.0%}" for v in shares))
    serve_forever(app, args.host, args.port)
    return 0


def _batch_dir(args: argparse.Namespace) -> Path | None:
    if args.batch_dir is None:
        return lmf_home() / "serve" / "batches"
    return None if args.batch_dir.lower() == "none" else Path(args.batch_dir)


def _capture(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    if not args.capture:
        return None

    return CaptureStore(
        args.capture, redact=args.redact, max_rows=args.capture_max_rows, max_days=args.capture_max_days
    )


def _stats(args: argparse.Namespace) -> int:
    rows = summarise(fetch_metrics(args.url, api_key=args.api_key[0] if args.api_key else None))
    return print_result(
        args,
        {"url": args.url, "quantiles": "estimated from histogram buckets", "series": rows},
        lambda: sys.stdout.write(format_table(rows)),
    )
