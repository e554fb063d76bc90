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
from collections.abc import Callable
from typing import Any

import lmfoundry
from llama_baselines import raw_decoder
from lmfoundry.types import Message

TOPIC = "assert"
"""The passage: a section of Python's language reference (pydoc_data, on every Python)."""


def summary_prompt(model: Any) -> list[int]:
    from pydoc_data.topics import topics

    text = topics[TOPIC].strip()
    ask = f"{text}\n\nSummarize the text above: what the statement does and how it is equivalent."
    return list(model.prompt_ids([Message("user", ask)]))


def lmf_decoder(model: Any, new_tokens: int) -> Callable[[list[int]], tuple[list[int], float, float]]:
    from lmfoundry.generate.engine import run_stream
    from lmfoundry.types import SamplingParams

    params = SamplingParams(temperature=0.0, max_new_tokens=new_tokens)

    def run(prompt: list[int]) -> tuple[list[int], float, float]:
        result = next(e.result for e in run_stream(model.runtime, prompt, params) if e.result is not None)
        return result.token_ids, result.tokens_per_s, result.ttft_s

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
            outputs[name], tokens_per_s, _ = decode(prompt)
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
