"""Single-stream baselines on a GGUF file for bench/generate.py: llama-cpp-python's own
`Llama.generate` loop and llama.cpp's own `llama-server` (built or found by bench/serve.py's
`llama_server_binary`). Both get the same prompt ids and greedy decoding as our engine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def bench_llama_cpp_python(gguf: Path, prompt_ids: list[int], tokens: int, repeats: int) -> dict[str, Any]:
    """llama-cpp-python's `Llama.generate` (greedy), no lmfoundry code in the loop."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=2048, n_threads=2, n_threads_batch=2, verbose=False)
    eos = int(llm.token_eos())
    runs = []
    for repeat in range(repeats + 1):  # the first run warms up
        start, first_at, ids = time.perf_counter(), None, []
        for token in llm.generate(prompt_ids, temp=0.0, top_k=1, reset=True):
            first_at = first_at or time.perf_counter()
            ids.append(int(token))
            if token == eos or len(ids) >= tokens:
                break
        end = time.perf_counter()
        if repeat:
            runs.append(
                {"ttft_s": (first_at or end) - start, "tokens_per_s": (len(ids) - 1) / (end - first_at)}
            )
    return {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
        "ttft_s": statistics.median(r["ttft_s"] for r in runs),
        "completion_tokens": len(ids),
        "token_ids": ids,
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
