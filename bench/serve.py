"""Serving benchmark: our server (continuous batching, and on its llama.cpp backend) against
llama-cpp-python's own server and a naive one-request-at-a-time transformers server; plus the cost
of mixing 4 LoRA adapters into the load.

    .venv/bin/python bench/serve.py [--quick] [--model smollm2-135m-instruct] [--clients 1 4 16]
                                    [--requests 2] [--max-tokens 32] [--threads 2]

Every server runs as its own process on 127.0.0.1 (a free port) with `--threads` CPU threads and
its own OpenMP wait policy (`--omp-wait-policy`; `lmf serve` sets PASSIVE, llama-server spins);
this process only sends requests. `--quick` sends
1 request per client of at most 16 tokens. Targets, all on the packaged model (the GGUF found by
`lmfoundry.models.catalog`):

- `lmf_default`: `lmf serve MODEL` with its defaults (`--backend auto`: llama.cpp batching over the
  float16 GGUF made from the store's fp32 weights)
- `llama_server_f16`: `llama-server` (as below) on that same float16 file: the same weights
- `batched`: `lmf serve MODEL --backend transformers` (fp32, continuous batching)
- `naive`: the same fp32 weights behind a lock, one request at a time (this file, `--naive-server`)
- `ours_gguf`: `lmf serve <packaged GGUF> --backend llama_cpp` (continuous batching on llama.cpp)
- `ours_gguf_seq`: the same with `--max-batch 1` (one request at a time, the scheduler before batching)
- `llama_server`: llama.cpp's own `llama-server -np <most clients> -c <512 per slot> -t <threads>`
  on the packaged GGUF: parallel slots, continuous batching and prompt caching, the strongest CPU
  server users pick. Found at `$LLAMA_SERVER`, else built once by `bench/build_llama_server.sh`
  from the llama.cpp sources vendored in the llama-cpp-python sdist (same portable AVX2 flags)
- `llama_cpp_server`: `python -m llama_cpp.server --model <packaged GGUF>` with
  `--interrupt_requests False` (its default True ends a running stream as soon as another request
  waits, which would cut every concurrent stream short); it needs
  `pip install sse-starlette starlette-context pydantic-settings`

For each client count, that many streaming clients each send `--requests` completions in a row
(`/v1/completions`, a ChatML-formatted question, greedy, `--max-tokens` new tokens at most);
we report aggregate completion tokens/s (all tokens / wall time) and TTFT p50/p95 (client side,
first non-empty text chunk). The adapter part serves `batched` with 4 random-but-valid LoRA
adapters loaded (cached under the temp dir) and compares requests spread evenly over
`bench:adapter0..3` with base-only requests to the same server. Prints one JSON line; ratios are
what to compare (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

QUESTIONS = [
    "Write a short note about the sea.",
    "Explain what a CPU cache is.",
    "List three fruits and their colours.",
    "Describe a quiet morning in a small town.",
]
# Raw completions of an instruct model's bare question often end at once (EOS); a ChatML-formatted
# prompt (SmolLM2's template, written out so every server tokenizes the same text) gets answers.
PROMPTS = [f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n" for q in QUESTIONS]
N_ADAPTERS = 4
SERVED_NAME = "bench"


# -- the naive baseline server (run as a subprocess of this file) ------------------------------
def naive_app(model: Any) -> Any:
    """The baseline: a lock around the engine's single-request stream (no batching)."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app, lock = FastAPI(), threading.Lock()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": SERVED_NAME, "object": "model"}]}

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


def run_naive_server(model_name: str, port: int, threads: int) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `lmf serve` does; before torch loads
    import uvicorn

    import lmfoundry

    model = lmfoundry.load(model_name, backend="transformers", threads=threads)
    uvicorn.run(naive_app(model), host="127.0.0.1", port=port, log_level="warning")
    return 0


# -- processes ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server_process(
    name: str, command: list[str], port: int, log_dir: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start `command`, wait until GET /v1/models answers 200, yield the base URL, then stop it."""
    import httpx

    url = f"http://127.0.0.1:{port}"
    log = (log_dir / f"{name}.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {log_dir / name}.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer within 300 s; see {log_dir / name}.log")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                    break
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def lmf_serve_command(model: str, backend: str, port: int, args: argparse.Namespace) -> list[str]:
    most = max(args.clients)
    return [
        *(sys.executable, "-m", "lmfoundry.cli.main", "serve", model, "--backend", backend),
        *("--served-model-name", SERVED_NAME, "--port", str(port), "--threads", str(args.threads)),
        *("--embedder", "none", "--batch-dir", "none", "--timeout", "0"),
        *("--max-batch", str(most), "--max-queue", str(4 * most)),
    ]


# -- load generation ------------------------------------------------------------------------------
async def sse_chunks(
    client: Any, path: str, body: dict[str, Any], label: str
) -> AsyncIterator[dict[str, Any]]:
    """POST a streaming request and yield each server-sent JSON chunk (a non-200 is an error)."""
    async with client.stream("POST", path, json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{label}: HTTP {response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line[6:])


async def one_request(client: Any, prompt: str, max_tokens: int, model: str) -> tuple[float, int, str]:
    """One streaming completion: (TTFT, completion tokens, where the count came from)."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start, ttft, usage, chunks = time.perf_counter(), None, None, 0
    async for chunk in sse_chunks(client, "/v1/completions", body, model):
        if chunk.get("choices") and chunk["choices"][0].get("text"):
            chunks += 1
            ttft = ttft if ttft is not None else time.perf_counter() - start
        if chunk.get("usage"):
            usage = chunk["usage"]["completion_tokens"]
    if usage is None and chunks == 0:
        raise RuntimeError(f"{model}: a request produced no text")
    # llama-cpp-python streams one chunk per token and sends no usage: count the chunks then.
    return (
        (ttft if ttft is not None else time.perf_counter() - start),
        (usage if usage is not None else chunks),
        ("usage" if usage is not None else "chunks"),
    )


async def load_test(
    url: str, clients: int, requests: int, max_tokens: int, models: list[str]
) -> dict[str, Any]:
    """`clients` concurrent clients, `requests` each; request i of client k uses models[(k+i) % len]."""
    import httpx

    # a new connection per request: llama-server (cpp-httplib) closes kept-alive connections after a
    # few requests, and a request racing that close fails with "Server disconnected"
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def worker(k: int) -> list[tuple[float, int, str]]:
            return [
                await one_request(
                    client, PROMPTS[(k + i) % len(PROMPTS)], max_tokens, models[(k + i) % len(models)]
                )
                for i in range(requests)
            ]

        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(k) for k in range(clients))) for r in rs]
        wall = time.perf_counter() - start
    ttfts = sorted(t for t, _, _ in results)
    tokens = sum(n for _, n, _ in results)
    return {
        "clients": clients,
        "requests": len(results),
        "tokens": tokens,
        "token_count": sorted({s for _, _, s in results}),
        "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 2),
        "ttft_p50_s": round(statistics.median(ttfts), 4),
        "ttft_p95_s": round(ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))], 4),
    }


def sweep(label: str, url: str, args: argparse.Namespace, models: list[str], clients: list[int]) -> list[Any]:
    asyncio.run(load_test(url, 1, 1, 4, models[:1]))  # warm-up
    rows = []
    for n in clients:
        rows.append(asyncio.run(load_test(url, n, args.requests, args.max_tokens, models)))
        print(f"{label} x{n}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


# -- adapters -------------------------------------------------------------------------------------
def make_adapters(model_name: str, root: Path, count: int) -> list[Path]:
    """`count` different LoRA adapters (the project's default all-linear r=8 shape, small random
    B so outputs move but stay text), saved with save_pretrained and cached under `root`."""
    paths = [root / f"adapter{i}" for i in range(count)]
    if all((p / "adapter_config.json").is_file() for p in paths):
        return paths
    import torch
    from peft import LoraConfig, get_peft_model

    from lmfoundry.fsutil import atomic_dir
    from lmfoundry.models.load import load_hf_model

    model, _ = load_hf_model(model_name)
    for i, path in enumerate(paths):
        if (path / "adapter_config.json").is_file():
            continue
        torch.manual_seed(1000 + i)
        config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0.0, 0.02)
        with atomic_dir(path) as tmp:
            peft_model.save_pretrained(str(tmp))
        model = peft_model.unload()
    return paths


# -- main -----------------------------------------------------------------------------------------
def packaged_gguf(model_name: str) -> Path:
    from lmfoundry.models.catalog import CATALOG, packaged_gguf
    from lmfoundry.paths import lmf_home

    return packaged_gguf(CATALOG[model_name], lmf_home() / "models" / "packaged")


def float16_gguf(model_name: str) -> Path:
    """The float16 GGUF `lmf serve MODEL` runs by default (made once from the fp32 weights)."""
    from lmfoundry.generate.backend_choice import fast_entry
    from lmfoundry.models.fast_gguf import ensure_fast_gguf
    from lmfoundry.models.load import resolve

    entry = fast_entry(resolve(model_name), has_adapters=False)
    if entry is None:
        raise RuntimeError(f"{model_name} has no float16 GGUF path (is llama-cpp-python installed?)")
    return ensure_fast_gguf(entry)


def ratio(
    a: list[dict[str, Any]], b: list[dict[str, Any]], clients: int, key: str = "tokens_per_s"
) -> float | None:
    x = next((r[key] for r in a if r["clients"] == clients), None)
    y = next((r[key] for r in b if r["clients"] == clients), None)
    return round(x / y, 3) if x and y else None


def llama_server_binary() -> str:
    """`$LLAMA_SERVER`, else the binary bench/build_llama_server.sh builds (once) and prints."""
    if os.environ.get("LLAMA_SERVER"):
        return os.environ["LLAMA_SERVER"]
    script = Path(__file__).with_name("build_llama_server.sh")
    built = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    if built.returncode != 0:
        raise RuntimeError(f"could not build llama-server:\n{built.stderr[-3000:]}")
    return str(Path(__file__).resolve().parents[1] / built.stdout.strip().splitlines()[-1])


def llama_server_command(gguf: Path, port: int, args: argparse.Namespace) -> list[str]:
    slots = max(args.clients)
    return [
        *(llama_server_binary(), "-m", str(gguf), "--alias", SERVED_NAME),
        *("--host", "127.0.0.1", "--port", str(port), "-np", str(slots), "-c", str(512 * slots)),
        # no --log-disable: with it this llama-server dropped connections under 16 clients
        *("-t", str(args.threads), "-tb", str(args.threads)),
    ]


def run_targets(args: argparse.Namespace, gguf: Path, logs: Path, report: dict[str, Any]) -> None:
    targets: dict[str, tuple[list[str], dict[str, str] | None]] = {}
    port = free_port()
    targets["lmf_default"] = (lmf_serve_command(args.model, "auto", port, args), None)
    targets["batched"] = (lmf_serve_command(args.model, "transformers", port, args), None)
    targets["ours_gguf"] = (lmf_serve_command(str(gguf), "llama_cpp", port, args), None)
    targets["ours_gguf_seq"] = ([*targets["ours_gguf"][0], "--max-batch", "1"], None)
    targets["llama_cpp_server"] = (
        [
            *(sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", SERVED_NAME),
            *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"),
            *("--n_threads", str(args.threads), "--n_threads_batch", str(args.threads)),
            *("--interrupt_requests", "False", "--verbose", "False", "--flash_attn", "True"),
        ],
        None,
    )
    if "llama_server" in args.targets:
        targets["llama_server"] = (llama_server_command(gguf, port, args), None)
    if "llama_server_f16" in args.targets:
        targets["llama_server_f16"] = (llama_server_command(float16_gguf(args.model), port, args), None)
    naive = [sys.executable, __file__, "--naive-server", str(port), "--model", args.model]
    targets["naive"] = ([*naive, "--threads", str(args.threads)], None)
    for label in args.targets:
        command, env = targets[label]
        with server_process(label, command, port, logs, env) as url:
            try:
                report["targets"][label] = sweep(label, url, args, [SERVED_NAME], args.clients)
            except Exception as exc:  # a server that crashed or dropped requests: show its log
                raise RuntimeError(f"{label} failed under load: {exc!r}") from exc


def run_adapters(args: argparse.Namespace, logs: Path, report: dict[str, Any]) -> None:
    root = Path(tempfile.gettempdir()) / "lmf-bench-serve-adapters" / args.model
    paths = make_adapters(args.model, root, N_ADAPTERS)
    port = free_port()
    command = lmf_serve_command(args.model, "transformers", port, args)
    for i, path in enumerate(paths):
        command += ["--adapter", f"adapter{i}={path}"]
    command += ["--max-adapters", str(N_ADAPTERS)]
    mixed_names = [f"{SERVED_NAME}:adapter{i}" for i in range(N_ADAPTERS)]
    base: list[Any] = []
    mixed: list[Any] = []
    with server_process("adapters", command, port, logs) as url:
        asyncio.run(load_test(url, 1, 1, 4, mixed_names))  # warm-up of every adapter path
        for n in args.adapter_clients:  # interleaved so drifting machine load hits both alike
            base += sweep(f"adapters base-only x{n}", url, args, [SERVED_NAME], [n])
            mixed += sweep(f"adapters mixed x{n}", url, args, mixed_names, [n])
    report["adapters"] = {
        "count": N_ADAPTERS,
        "lora": "r=8, alpha=16, all-linear",
        "base_only": base,
        "mixed": mixed,
        "mixed_vs_base_only": {str(n): ratio(mixed, base, n) for n in args.adapter_clients},
    }


def _at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def _at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


def summarise(report: dict[str, Any], args: argparse.Namespace) -> None:
    t, top = report["targets"], max(args.clients)
    get = lambda name: t.get(name, [])  # noqa: E731
    ratios = {
        f"batched_vs_naive_x{top}": ratio(get("batched"), get("naive"), top),
        f"batched_vs_llama_cpp_server_x{top}": ratio(get("batched"), get("llama_cpp_server"), top),
        f"ours_gguf_vs_llama_cpp_server_x{top}": ratio(get("ours_gguf"), get("llama_cpp_server"), top),
        f"ours_gguf_vs_ours_gguf_seq_x{top}": ratio(get("ours_gguf"), get("ours_gguf_seq"), top),
        f"best_ours_vs_llama_cpp_server_x{top}": None,
        f"ours_gguf_vs_llama_server_x{top}": ratio(get("ours_gguf"), get("llama_server"), top),
        f"batched_vs_llama_server_x{top}": ratio(get("batched"), get("llama_server"), top),
        f"ours_gguf_ttft_p50_vs_llama_server_x{top}": ratio(
            get("ours_gguf"), get("llama_server"), top, key="ttft_p50_s"
        ),
        f"lmf_default_vs_llama_server_f16_x{top}": ratio(get("lmf_default"), get("llama_server_f16"), top),
        f"lmf_default_ttft_p50_vs_llama_server_f16_x{top}": ratio(
            get("lmf_default"), get("llama_server_f16"), top, key="ttft_p50_s"
        ),
        f"lmf_default_vs_llama_server_x{top}": ratio(get("lmf_default"), get("llama_server"), top),
        f"lmf_default_vs_batched_x{top}": ratio(get("lmf_default"), get("batched"), top),
    }
    ours = [ratios[f"batched_vs_llama_cpp_server_x{top}"], ratios[f"ours_gguf_vs_llama_cpp_server_x{top}"]]
    if any(r is not None for r in ours):
        ratios[f"best_ours_vs_llama_cpp_server_x{top}"] = max(r for r in ours if r is not None)
    report["ratios"] = ratios
    mix = report.get("adapters", {}).get("mixed_vs_base_only", {})
    vs_naive = ratios[f"batched_vs_naive_x{top}"]
    best = ratios[f"best_ours_vs_llama_cpp_server_x{top}"]
    report["goals"] = {
        "x16_batched_ge_3x_naive": None if vs_naive is None else vs_naive >= 3.0,
        "x16_ours_ge_llama_cpp_server": None if best is None else best >= 1.0,
        "x16_lmf_default_ge_llama_server_same_weights": _at_least(
            ratios[f"lmf_default_vs_llama_server_f16_x{top}"], 1.0
        ),
        "x16_lmf_default_ttft_le_1.2x_llama_server_same_weights": _at_most(
            ratios[f"lmf_default_ttft_p50_vs_llama_server_f16_x{top}"], 1.2
        ),
        "x16_ours_gguf_ge_llama_server": _at_least(ratios[f"ours_gguf_vs_llama_server_x{top}"], 1.0),
        "x16_ours_gguf_ttft_le_1.2x_llama_server": _at_most(
            ratios[f"ours_gguf_ttft_p50_vs_llama_server_x{top}"], 1.2
        ),
        "adapter_mix_ge_0.85x_base_only": None
        if not mix or None in mix.values()
        else all(v >= 0.85 for v in mix.values()),
    }


def main(argv: list[str] | None = None) -> int:
    all_targets = [
        *("lmf_default", "llama_server_f16", "batched", "ours_gguf", "ours_gguf_seq"),
        *("llama_server", "llama_cpp_server", "naive"),
    ]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a packaged model (catalog name)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--adapter-clients", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every server")
    parser.add_argument(
        "--targets",
        nargs="*",
        choices=all_targets,
        default=all_targets,
        help="servers to compare (none: adapters only)",
    )
    parser.add_argument("--no-adapters", action="store_true", help="skip the adapter-mix part")
    parser.add_argument(
        "--omp-wait-policy",
        choices=["own", "PASSIVE", "ACTIVE"],
        default="own",
        help="OMP_WAIT_POLICY of the servers: own = each server's default (lmf serve sets PASSIVE)",
    )
    parser.add_argument("--quick", action="store_true", help="1 request per client, 16 new tokens")
    parser.add_argument("--naive-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_server:
        return run_naive_server(args.model, args.naive_server, args.threads)
    if args.quick:
        args.requests, args.max_tokens = 1, 16
    # Each server at its own defaults ("own"): llama-server's OpenMP threads spin-wait (ACTIVE, its
    # best on an idle machine: forcing PASSIVE on it measured 168 vs 240-270 tok/s at 16 clients),
    # while `lmf serve` sets PASSIVE for itself. A policy given here applies to every server.
    if args.omp_wait_policy == "own":
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    gguf = packaged_gguf(args.model)
    report: dict[str, Any] = {
        "bench": "serve",
        "model": args.model,
        "gguf": gguf.name,
        "max_tokens": args.max_tokens,
        "requests_per_client": args.requests,
        "threads": args.threads,
        "omp_wait_policy": args.omp_wait_policy,
        "load_average_start": round(os.getloadavg()[0], 2),
        "targets": {},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lmf-bench-serve-") as logs:
        try:
            run_targets(args, gguf, Path(logs), report)
            if not args.no_adapters:
                run_adapters(args, Path(logs), report)
        except RuntimeError:
            for log in sorted(Path(logs).glob("*.log")):
                print(f"--- {log.name}\n{log.read_text()[-2000:]}", file=sys.stderr)
            raise
    report["load_average_end"] = round(os.getloadavg()[0], 2)
    report["total_s"] = round(time.perf_counter() - started, 1)
    summarise(report, args)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
