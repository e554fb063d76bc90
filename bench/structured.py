"""What grammar-constrained decoding costs a busy server: aggregate tokens/s with half the requests
held to a JSON schema, against none constrained, on the same `lmf serve` process in the same run.

    .venv/bin/python bench/structured.py [--model smollm2-135m-instruct] [--clients 16]
                                         [--requests 2] [--max-tokens 32] [--rounds 2]
                                         [--backend transformers]

`--clients` streaming clients each send `--requests` chat completions in a row (greedy,
`--max-tokens` at most). In the `free` phase every request is plain text; in the `half` phase
every other request carries `response_format` json_schema (a free-text "notes" field, so
constrained answers run as long as free ones and the comparison is of per-token cost, not of
answer length). Phases alternate for `--rounds` rounds so drift on a shared machine hits both.
Throughput phases cut every answer at `--max-tokens` (by design: equal lengths), so after them a
`validity` phase sends 16 concurrent requests with a bounded schema and room to finish, and
counts the answers that parse and validate (and the empty and cut ones). One JSON line; the
goal is half >= 0.9x free.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from serve import QUESTIONS, SERVED_NAME, free_port, server_process, sse_chunks  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {"topic": {"type": "string", "maxLength": 40}, "notes": {"type": "string"}},
    "required": ["topic", "notes"],
    "additionalProperties": False,
}
BOUNDED = {**SCHEMA, "properties": {**SCHEMA["properties"], "notes": {"type": "string", "maxLength": 80}}}


async def one_chat(
    client: Any, question: str, max_tokens: int, constrained: bool, schema: dict[str, Any] = SCHEMA
) -> dict[str, Any]:
    """One streamed chat completion: TTFT, completion tokens, finish reason and the text."""
    body: dict[str, Any] = {
        "model": SERVED_NAME,
        "messages": [{"role": "user", "content": question + (" Answer in JSON." if constrained else "")}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "note", "schema": schema}}
    start, ttft, tokens, text, finish = time.perf_counter(), None, 0, "", None
    async for chunk in sse_chunks(client, "/v1/chat/completions", body, "chat"):
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        for choice in chunk.get("choices", []):
            piece = choice["delta"].get("content") or ""
            if piece and ttft is None:
                ttft = time.perf_counter() - start
            text += piece
            finish = choice.get("finish_reason") or finish
    return {
        "ttft": ttft or time.perf_counter() - start,
        "tokens": tokens,
        "text": text,
        "finish": finish,
        "constrained": constrained,
    }


async def phase(url: str, clients: int, requests: int, max_tokens: int, half: bool) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def worker(k: int) -> list[dict[str, Any]]:
            return [
                await one_chat(
                    client, QUESTIONS[(k + i) % len(QUESTIONS)], max_tokens, half and (k + i) % 2 == 0
                )
                for i in range(requests)
            ]

        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(k) for k in range(clients))) for r in rs]
        wall = time.perf_counter() - start
    return {"wall_s": wall, "results": results}


async def validity(url: str, clients: int) -> dict[str, int]:
    """`clients` concurrent constrained requests with a bounded schema and room to finish."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        results = await asyncio.gather(
            *(one_chat(client, QUESTIONS[k % len(QUESTIONS)], 160, True, BOUNDED) for k in range(clients))
        )
    return check(list(results), BOUNDED)


def check(results: list[dict[str, Any]], schema: dict[str, Any] = SCHEMA) -> dict[str, int]:
    """Counts: constrained answers that parse and validate, that were cut, and empty answers."""
    import jsonschema

    counts = {"constrained": 0, "valid_json": 0, "cut_by_length": 0, "empty": 0}
    for r in results:
        counts["empty"] += not r["text"].strip()
        counts["cut_by_length"] += r["finish"] == "length"
        if not r["constrained"]:
            continue
        counts["constrained"] += 1
        try:
            jsonschema.validate(json.loads(r["text"]), schema)
            counts["valid_json"] += 1
        except (json.JSONDecodeError, jsonschema.ValidationError):
            pass
    return counts


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    results = [r for run in runs for r in run["results"]]
    tokens = sum(r["tokens"] for r in results)
    wall = sum(run["wall_s"] for run in runs)
    ttfts = sorted(r["ttft"] for r in results)
    return {
        "requests": len(results),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2),
        "ttft_p50_s": round(statistics.median(ttfts), 3),
        **check(results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--backend", default="transformers", choices=["transformers", "llama_cpp"])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2, help="requests per client per phase")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="free/half phase pairs, alternated")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    port = free_port()
    command = [
        *(sys.executable, "-m", "lmfoundry.cli.main", "serve", args.model, "--backend", args.backend),
        *("--served-model-name", SERVED_NAME, "--port", str(port), "--threads", str(args.threads)),
        *("--embedder", "none", "--batch-dir", "none", "--timeout", "0"),
        *("--max-batch", str(args.clients), "--max-queue", str(4 * args.clients)),
    ]
    runs: dict[str, list[dict[str, Any]]] = {"free": [], "half": []}
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="lmf-bench-structured-") as logs,
        server_process("lmf", command, port, Path(logs)) as url,
    ):
        asyncio.run(phase(url, 2, 1, 8, half=True))  # warm-up, and the grammar tokenizer built once
        for round_ in range(args.rounds):
            for name in ("free", "half") if round_ % 2 == 0 else ("half", "free"):
                runs[name].append(
                    asyncio.run(phase(url, args.clients, args.requests, args.max_tokens, name == "half"))
                )
                print(f"round {round_} {name}: {summarise(runs[name][-1:])}", file=sys.stderr, flush=True)
        valid = asyncio.run(validity(url, args.clients))
    free, half = summarise(runs["free"]), summarise(runs["half"])
    report = {
        "bench": "structured",
        "model": args.model,
        "backend": args.backend,
        "clients": args.clients,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "cpu": cpu_model(),
        "free": free,
        "half_constrained": half,
        "half_vs_free_tokens_per_s": round(half["tokens_per_s"] / free["tokens_per_s"], 3),
        "validity": valid,
        "goal_ge_0.9": half["tokens_per_s"] / free["tokens_per_s"] >= 0.9,
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report))
    return 0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
