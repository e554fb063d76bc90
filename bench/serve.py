"""Serving benchmark: continuous batching vs a naive one-request-at-a-time server.

    .venv/bin/python bench/serve.py [--model smollm2-135m-instruct] [--clients 1 4 16] [--max-tokens 32]

Both servers run the same weights (transformers, fp32, CPU) on 127.0.0.1 in this process. For each
client count, that many streaming clients each send `--requests` completions; we report aggregate
completion tokens/s (all tokens / wall time) and TTFT p50/p95 (client-side, first content chunk).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from typing import Any

PROMPTS = [
    "Write a short note about the sea.",
    "Explain what a CPU cache is.",
    "List three fruits and their colours.",
    "Describe a quiet morning in a small town.",
]


def naive_app(model: Any) -> Any:
    """The baseline: a lock around the engine's single-request stream (no batching)."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app, lock = FastAPI(), threading.Lock()

    @app.post("/v1/completions")
    def complete(body: dict[str, Any]) -> Any:
        def events() -> Any:
            with lock:
                for event in model.stream_events(
                    body["prompt"], temperature=0, max_new_tokens=body["max_tokens"]
                ):
                    if event.delta:
                        yield f"data: {json.dumps({'choices': [{'index': 0, 'text': event.delta}]})}\n\n"
                    if event.result is not None:
                        usage = {"completion_tokens": event.result.completion_tokens}
                        yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


async def one_request(client: Any, prompt: str, max_tokens: int, model: str) -> tuple[float, int]:
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start, ttft, tokens = time.perf_counter(), None, 0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("text") and ttft is None:
                ttft = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return (ttft if ttft is not None else time.perf_counter() - start), tokens


async def load_test(url: str, clients: int, requests: int, max_tokens: int, model: str) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def worker(k: int) -> list[tuple[float, int]]:
            return [
                await one_request(client, PROMPTS[(k + i) % len(PROMPTS)], max_tokens, model)
                for i in range(requests)
            ]

        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(k) for k in range(clients))) for r in rs]
        wall = time.perf_counter() - start
    ttfts = sorted(t for t, _ in results)
    tokens = sum(n for _, n in results)
    return {
        "clients": clients,
        "requests": len(results),
        "tokens": tokens,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 2),
        "ttft_p50_s": round(statistics.median(ttfts), 4),
        "ttft_p95_s": round(ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))], 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `lmf serve` does; before torch loads

    import lmfoundry
    from lmfoundry.serve.app import create_app
    from lmfoundry.serve.runner import running_server
    from lmfoundry.serve.service import ServedModel, ServeOptions

    model = lmfoundry.load(args.model, backend="transformers")
    options = ServeOptions(embedder=None, max_batch=max(args.clients), max_queue=4 * max(args.clients))
    served = ServedModel.create(model, name="bench", options=options)
    report: dict[str, Any] = {
        "bench": "serve",
        "model": args.model,
        "max_tokens": args.max_tokens,
        "requests_per_client": args.requests,
        "batched": [],
        "naive": [],
    }
    try:
        for label, app in (("batched", create_app(served, options)), ("naive", naive_app(model))):
            with running_server(app) as url:
                asyncio.run(load_test(url, 1, 1, 4, "bench"))  # warm-up
                for clients in args.clients:
                    report[label].append(
                        asyncio.run(load_test(url, clients, args.requests, args.max_tokens, "bench"))
                    )
                    print(f"{label} x{clients}: {report[label][-1]}", file=sys.stderr)
    finally:
        served.close()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
