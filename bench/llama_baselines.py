"""Single-stream baselines on a GGUF file for bench/generate.py: llama-cpp-python's own
`Llama.generate` loop and llama.cpp's own `llama-server` (built or found by bench/serve.py's
`llama_server_binary`). Both get the same prompt ids and greedy decoding as our engine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def raw_decoder(
    gguf: str, threads: int, new_tokens: int
) -> Callable[[list[int]], tuple[list[int], float, float]]:
    """llama-cpp-python alone: greedy `Llama.generate`, no lmfoundry code in the loop, timed like our
    engine (tokens/s after the first token). Stops at EOS or `<|im_end|>`, as our engine does.
    Flash attention is on: llama-cpp-python defaults it off, llama.cpp's tools on, and a baseline
    runs at its best.
    Returns run(prompt_ids) -> (token ids, tokens/s, TTFT in s)."""
    from llama_cpp import Llama

    llm = Llama(  # flash attention on, as llama.cpp's own tools default to (and as our backend runs)
        model_path=gguf,
        n_ctx=4096,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=True,
        verbose=False,
    )
    eos = {int(llm.token_eos())} | {int(t) for t in llm.tokenize(b"<|im_end|>", add_bos=False, special=True)}

    def run(prompt: list[int]) -> tuple[list[int], float, float]:
        out: list[int] = []
        start, first = time.perf_counter(), 0.0
        for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
            first = first or time.perf_counter()
            if token in eos or len(out) >= new_tokens:
                break
            out.append(int(token))
        return out, (len(out) - 1) / max(time.perf_counter() - first, 1e-9), first - start

    return run


def bench_llama_cpp_python(gguf: Path, prompt_ids: list[int], tokens: int, repeats: int) -> dict[str, Any]:
    """`raw_decoder` on `gguf`, the first run a warm-up; medians of `repeats` runs."""
    decode = raw_decoder(str(gguf), os.cpu_count() or 2, tokens)
    decode(prompt_ids)
    runs = [decode(prompt_ids) for _ in range(repeats)]
    return {
        "tokens_per_s": statistics.median(r[1] for r in runs),
        "ttft_s": statistics.median(r[2] for r in runs),
        "completion_tokens": len(runs[0][0]),
        "token_ids": runs[0][0],
    }


def bench_llama_server(gguf: Path, prompt_ids: list[int], tokens: int, repeats: int) -> dict[str, Any]:
    """llama.cpp's `llama-server` (one slot, 2 threads): prompt ids in, greedy, streamed; decode
    speed from the client's clock between the first and last token (as for our engine)."""
    import httpx

    from serve import free_port, llama_server_binary, server_process  # bench/serve.py

    port = free_port()
    command = [llama_server_binary(), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port)]
    command += ["-np", "1", "-c", "2048", "-t", "2", "-tb", "2", "--log-disable"]
    runs = []
    with (
        tempfile.TemporaryDirectory() as logs,
        server_process("llama_server", command, port, Path(logs)) as url,
    ):
        for repeat in range(repeats + 1):
            run = _stream_completion(httpx, url, prompt_ids, tokens)
            if repeat:
                runs.append(run)
    return {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
        "ttft_s": statistics.median(r["ttft_s"] for r in runs),
        "completion_tokens": len(runs[0]["ids"]),
        "token_ids": runs[0]["ids"],
    }


def _stream_completion(httpx: Any, url: str, prompt_ids: list[int], tokens: int) -> dict[str, Any]:
    body = {
        "prompt": prompt_ids,
        "n_predict": tokens,
        "temperature": 0,
        "top_k": 1,
        "stream": True,
        "cache_prompt": False,
        "return_tokens": True,
    }
    start, first_at, ids = time.perf_counter(), None, []
    with httpx.stream("POST", f"{url}/completion", json=body, timeout=600) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("tokens"):
                first_at = first_at or time.perf_counter()
                ids.extend(int(t) for t in chunk["tokens"])
    end = time.perf_counter()
    return {
        "ids": ids,
        "ttft_s": (first_at or end) - start,
        "tokens_per_s": (len(ids) - 1) / (end - first_at),
    }


if __name__ == "__main__":  # a quick look: python bench/llama_baselines.py GGUF
    parser = argparse.ArgumentParser()
    parser.add_argument("gguf", type=Path)
    args = parser.parse_args()
    import llama_cpp

    vocab_only = llama_cpp.Llama(model_path=str(args.gguf), vocab_only=True, verbose=False)
    chat = (
        "<|im_start|>user\nWrite a detailed essay about the Roman Empire.<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = vocab_only.tokenize(chat.encode(), add_bos=False, special=True)
    rows = {
        "llama_cpp_python": bench_llama_cpp_python(args.gguf, ids, 64, 2),
        "llama_server": bench_llama_server(args.gguf, ids, 64, 2),
    }
    for row in rows.values():
        row.pop("token_ids")
    print(json.dumps(rows))
