"""Fast default path and prompt-lookup speculative decoding, on the packaged model, in one run.

Three decoders on the same GGUF file (for a store model, the float16 GGUF `auto` makes from its
fp32 weights; for a GGUF quantization in the store, its own file):
- `llama_cpp_python`: llama-cpp-python's `Llama.generate` alone (the baseline the default must match);
- `lmf_default`: `lmfoundry.load(MODEL)` with default settings (auto picks llama.cpp on that file);
- `lmf_prompt_lookup`: the same with `speculative="prompt-lookup"`.
Each decodes the same summarization prompt greedily (the answer copies phrases from the text),
alternating, `--repeats` times; decode tokens/s is the median, ratios are same-run. Prints one JSON line.

    .venv/bin/python bench/speculative.py [--model smollm2-135m-instruct] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import lmfoundry
from lmfoundry.types import Message

TOPIC = "assert"
"""The passage: a section of Python's language reference (pydoc_data, on every Python)."""


def summary_prompt(model: Any) -> list[int]:
    from pydoc_data.topics import topics

    text = topics[TOPIC].strip()
    ask = f"{text}\n\nSummarize the text above: what the statement does and how it is equivalent."
    return list(model.prompt_ids([Message("user", ask)]))


def raw_decoder(gguf: str, threads: int, new_tokens: int) -> Callable[[list[int]], tuple[list[int], float]]:
    """llama-cpp-python alone: greedy `generate`, timed like our engine (after the first token)."""
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=4096, n_threads=threads, verbose=False)
    eos = {int(llm.token_eos())} | {int(t) for t in llm.tokenize(b"<|im_end|>", add_bos=False, special=True)}

    def run(prompt: list[int]) -> tuple[list[int], float]:
        out: list[int] = []
        first = 0.0
        for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
            first = first or time.perf_counter()
            if token in eos or len(out) >= new_tokens:
                break
            out.append(int(token))
        return out, (len(out) - 1) / max(time.perf_counter() - first, 1e-9)

    return run


def lmf_decoder(model: Any, new_tokens: int) -> Callable[[list[int]], tuple[list[int], float]]:
    from lmfoundry.generate.engine import run_stream
    from lmfoundry.types import SamplingParams

    params = SamplingParams(temperature=0.0, max_new_tokens=new_tokens)

    def run(prompt: list[int]) -> tuple[list[int], float]:
        result = next(e.result for e in run_stream(model.runtime, prompt, params) if e.result is not None)
        return result.token_ids, result.tokens_per_s

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--new-tokens", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    default = lmfoundry.load(args.model, threads=args.threads)
    spec = lmfoundry.load(args.model, threads=args.threads, speculative="prompt-lookup")
    gguf = str(default.runtime.llm.model_path)  # the file auto chose (the float16 GGUF of a store model)
    prompt = summary_prompt(default)
    decoders = {
        "llama_cpp_python": raw_decoder(gguf, args.threads, args.new_tokens),
        "lmf_default": lmf_decoder(default, args.new_tokens),
        "lmf_prompt_lookup": lmf_decoder(spec, args.new_tokens),
    }
    speeds: dict[str, list[float]] = {name: [] for name in decoders}
    outputs: dict[str, list[int]] = {}
    for _ in range(args.repeats):
        for name, decode in decoders.items():
            outputs[name], tokens_per_s = decode(prompt)
            speeds[name].append(tokens_per_s)
    median = {name: round(statistics.median(values), 1) for name, values in speeds.items()}
    report = {
        "model": args.model,
        "backend": default.backend,
        "gguf": os.path.basename(gguf),
        "prompt_tokens": len(prompt),
        "new_tokens": len(outputs["lmf_default"]),
        "tokens_per_s": median,
        "lmf_default_vs_llama_cpp_python_x": round(median["lmf_default"] / median["llama_cpp_python"], 2),
        "prompt_lookup_vs_default_x": round(median["lmf_prompt_lookup"] / median["lmf_default"], 2),
        "prompt_lookup_same_greedy_output": outputs["lmf_prompt_lookup"] == outputs["lmf_default"],
        "default_same_as_llama_cpp_python": outputs["lmf_default"] == outputs["llama_cpp_python"],
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
