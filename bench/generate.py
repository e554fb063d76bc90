"""Single-stream decode speed and time to first token on the packaged model, in one run.

Compares, on the same prompt and greedy decoding:
  - `lmf_default`: `lmfoundry.load(MODEL)` with default settings, what `lmf generate` runs (for a
    store model: llama.cpp on the float16 GGUF made from its fp32 weights), against the named
    baselines on the same file: llama-cpp-python's own `Llama.generate` loop and llama.cpp's own
    `llama-server` (one slot; built once by bench/build_llama_server.sh, or `$LLAMA_SERVER`),
  - lmfoundry's transformers backend (our decode loop, fp32),
  - lmfoundry's llama.cpp backend (the packaged Q4_1 GGUF),
  - the model exported by `lmf export onnx` (fp32 and int8) on onnxruntime-genai, CPU: the same
    prompt ids, greedy, with its agreement with the transformers engine's tokens (the exports are
    cached in the store entry's onnx-fp32/ and onnx-int8/ folders; `--no-onnx` skips them),
  - the baseline: plain `model.generate` from transformers on the same fp32 weights,
and prints the physical limit: measured memory bandwidth / bytes of weights read per token.

    .venv/bin/python bench/generate.py [--model smollm2-135m-instruct] [--tokens 128] [--repeats 3] [--no-onnx]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from llama_baselines import bench_llama_cpp_python, bench_llama_server

PROMPT = "Write a detailed essay about the history of the Roman Empire, from its founding to its fall."


def measure_bandwidth_gbs(size_mb: int = 512, repeats: int = 5) -> float:
    """Memory bandwidth from large tensor copies: (bytes read + bytes written) / time, best of N."""
    import torch

    src = torch.ones(size_mb * 1024 * 1024 // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * 4 / best / 1e9


def bench_engine(model, tokens: int, repeats: int) -> dict:  # type: ignore[no-untyped-def]
    from lmfoundry.types import Message

    runs = []
    model.generate([Message("user", "Hi")], temperature=0, max_new_tokens=4)  # warm-up
    for _ in range(repeats):
        result = model.generate([Message("user", PROMPT)], temperature=0, max_new_tokens=tokens)
        runs.append(result)
    return {
        "tokens_per_s": statistics.median(r.tokens_per_s for r in runs),
        "ttft_s": statistics.median(r.ttft_s for r in runs),
        "completion_tokens": runs[0].completion_tokens,
        "prompt_tokens": runs[0].prompt_tokens,
        "token_ids": runs[0].token_ids,  # popped before printing; the ONNX rows compare with them
    }


def bench_onnx(model: str, precision: str, prompt_ids: list[int], tokens: int, repeats: int) -> dict:
    """The `lmf export onnx` folder (exported once, kept in the store entry) on onnxruntime-genai."""
    from lmfoundry.finetune.export.onnx import default_target, export_onnx
    from lmfoundry.finetune.export.onnx_parity import OnnxRunner

    folder = default_target(model, precision, is_run=False)
    if not (folder / "genai_config.json").is_file():
        quantize = None if precision == "fp32" else precision
        export_onnx(model, quantize=quantize, out=folder, force=True, check=False)
    runner = OnnxRunner(folder)
    runner.greedy(prompt_ids[:8], 4)  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        ids, decode_s = runner.greedy(prompt_ids, tokens)
        total = time.perf_counter() - start
        runs.append({"ids": ids, "ttft_s": total - decode_s, "tokens_per_s": (len(ids) - 1) / decode_s})
    return {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
        "ttft_s": statistics.median(r["ttft_s"] for r in runs),
        "completion_tokens": len(runs[0]["ids"]),
        "token_ids": runs[0]["ids"],
        "bytes": sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith("model.onnx")),
    }


def bench_plain_generate(model_dir: str, prompt_ids: list[int], tokens: int, repeats: int) -> dict:
    """Baseline: transformers' own generate(), greedy, timing TTFT with a streamer."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([prompt_ids])

    class FirstToken:
        def __init__(self) -> None:
            self.calls, self.first_at = 0, None

        def put(self, value) -> None:  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == 2 and self.first_at is None:  # call 1 is the prompt
                self.first_at = time.perf_counter()

        def end(self) -> None:
            pass

    runs = []
    with torch.inference_mode():
        model.generate(ids[:, :8], do_sample=False, max_new_tokens=4)
        for _ in range(repeats):
            streamer = FirstToken()
            start = time.perf_counter()
            out = model.generate(ids, do_sample=False, max_new_tokens=tokens, streamer=streamer)
            end = time.perf_counter()
            n = out.shape[1] - ids.shape[1]
            first = streamer.first_at or end
            runs.append(
                {"ttft_s": first - start, "tokens_per_s": (n - 1) / (end - first) if n > 1 else 0.0, "n": n}
            )
    return {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
        "ttft_s": statistics.median(r["ttft_s"] for r in runs),
        "completion_tokens": runs[0]["n"],
    }


def default_path(model: str) -> tuple[Any, Path]:
    """`lmfoundry.load(model)` as `lmf generate` loads it, and the GGUF file it decodes."""
    import lmfoundry

    loaded = lmfoundry.load(model)
    if loaded.backend != "llama_cpp":
        raise SystemExit(
            f"the default path of {model} is {loaded.backend}, not llama_cpp: nothing to compare"
        )
    return loaded, Path(loaded.runtime.llm.model_path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime rows")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import lmfoundry
    from lmfoundry.finetune.export.check import agreement
    from lmfoundry.models.load import resolve
    from lmfoundry.types import Message

    resolved = resolve(args.model)
    checkpoint = resolved.checkpoint()
    hf = lmfoundry.load(args.model, backend="transformers")
    ours_hf = bench_engine(hf, args.tokens, args.repeats)
    prompt_ids = hf.prompt_ids([Message("user", PROMPT)])
    n_params = sum(p.numel() for p in hf.runtime.model.parameters())
    del hf
    baseline = bench_plain_generate(checkpoint, prompt_ids, args.tokens, args.repeats)
    llama = lmfoundry.load(args.model, backend="llama_cpp")
    ours_llama = bench_engine(llama, args.tokens, args.repeats)
    del llama
    default, default_gguf = default_path(args.model)
    ours_default = bench_engine(default, args.tokens, args.repeats)
    del default
    same_file = {
        "llama_cpp_python": bench_llama_cpp_python(default_gguf, prompt_ids, args.tokens, args.repeats),
        "llama_server": bench_llama_server(default_gguf, prompt_ids, args.tokens, args.repeats),
    }
    gguf_bytes = Path(str(resolved.gguf)).stat().st_size if resolved.gguf else None
    onnx = {}
    for precision in () if args.no_onnx else ("fp32", "int8"):
        onnx[f"onnx_{precision}"] = bench_onnx(args.model, precision, prompt_ids, args.tokens, args.repeats)
    for row in [ours_llama, ours_default, *same_file.values(), *onnx.values()]:  # vs fp32 transformers
        row["agreement_vs_transformers"] = agreement(ours_hf["token_ids"], row.pop("token_ids"))
    del ours_hf["token_ids"]
    bandwidth = measure_bandwidth_gbs()
    fp32_bytes = n_params * 4
    result = {
        "bench": "generate",
        "model": args.model,
        "threads": os.cpu_count(),
        "lmf_default": {**ours_default, "backend": "llama_cpp", "weights": default_gguf.name},
        **same_file,
        "default_vs_same_file": {
            name: round(ours_default["tokens_per_s"] / row["tokens_per_s"], 3)
            for name, row in same_file.items()
        },
        "transformers_engine": ours_hf,
        "llama_cpp_engine": ours_llama,
        **onnx,
        "baseline_plain_generate": baseline,
        "speedup_vs_baseline": {
            name: round(row["tokens_per_s"] / baseline["tokens_per_s"], 3)
            for name, row in {"transformers_engine": ours_hf, "llama_cpp_engine": ours_llama, **onnx}.items()
        },
        "bandwidth_gb_s": round(bandwidth, 2),
        "physical_limit_tokens_per_s": {
            "fp32": round(bandwidth * 1e9 / fp32_bytes, 1),
            "gguf": round(bandwidth * 1e9 / gguf_bytes, 1) if gguf_bytes else None,
        },
        "weights_bytes": {"fp32": fp32_bytes, "gguf": gguf_bytes},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
