"""Speed and memory half of the quantization report, one fresh interpreter per model.

`measure_perf` starts `python -m lmfoundry.quantize.report_speed '{"spec": ...}'`: load,
greedy-decode `new_tokens` tokens with the engine, report tokens/s and VmHWM. The peak is read
right after decoding, before anything else runs, so it is the model's inference peak: load +
prefill + decode. `model_rss_bytes` subtracts the RSS measured after importing the backend's
libraries (torch+transformers, or llama_cpp) and before loading; `model_only_rss_bytes`
subtracts the whole runtime (those libraries plus the architecture's transformers model class and
our engine, all imported before any weights load), i.e. the weights' and activations' own share.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.generate.engine import LoadedModel, load_model
from lmfoundry.generate.hf_backend import TransformersBackend
from lmfoundry.models.load import resolve
from lmfoundry.quantize.report_quality import BNB_PREFIX, ModelInfo, describe, load_bnb_nf4
from lmfoundry.rss import current_rss_bytes, peak_rss_bytes

PERF_PROMPT = "The Python language reference describes the syntax and core semantics of the language. "


def measure_perf(
    spec: str, new_tokens: int = 32, timeout_s: float = 900, threads: int | None = None
) -> dict[str, Any]:
    """Run `perf` for one model in a fresh interpreter and return its JSON result.

    `threads` fixes the compute threads (torch and llama.cpp alike; default: all cores). On a
    CPU shared with other jobs, one thread avoids the fork-join stalls that make many small ops
    (our band-wise dequantization) tens of times slower.
    """
    job = {"spec": spec, "new_tokens": new_tokens, "threads": threads}
    cmd = [sys.executable, "-m", "lmfoundry.quantize.report_speed", json.dumps(job)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LmfError(f"measuring {spec} took longer than {timeout_s:.0f} s") from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise LmfError(f"measuring {spec} failed: {tail}")
    return dict(json.loads(lines[-1]))


def _perf(spec: str, new_tokens: int, threads: int | None = None) -> dict[str, Any]:
    """Load, warm up, decode; peak RSS is read straight after decoding."""

    info = describe(spec)
    phases = _import_runtime(info)
    baseline = phases["libraries"]
    if threads and info.kind != "gguf":
        import torch

        torch.set_num_threads(threads)
    start = time.perf_counter()
    model = _load_for_decode(info, threads)
    load_s = time.perf_counter() - start
    loaded = current_rss_bytes()
    model.generate(PERF_PROMPT, temperature=0.0, max_new_tokens=4)
    result = model.generate(PERF_PROMPT, temperature=0.0, max_new_tokens=new_tokens)
    peak = peak_rss_bytes()
    return {
        "spec": spec,
        "backend": result.backend,
        "tokens_per_s": result.tokens_per_s,
        "completion_tokens": result.completion_tokens,
        "load_s": load_s,
        "peak_rss_bytes": peak,
        "baseline_rss_bytes": baseline,
        "model_rss_bytes": peak - baseline,
        "runtime_rss_bytes": phases["runtime"],
        "model_only_rss_bytes": peak - phases["runtime"],
        "rss_after_load_bytes": loaded,
        "rss_phases": phases,
        "threads": threads,
    }


def _import_runtime(info: ModelInfo) -> dict[str, int]:
    """RSS after each import step, before any weights load.

    `libraries` = torch + transformers (or llama_cpp); `runtime` adds what loading any model of
    this architecture pulls in regardless of its weights (the transformers model class, which
    imports torch.distributed/dynamo/sympy, and our engine), so `peak - runtime` is the weights'
    and activations' share.
    """

    phases = {"python": current_rss_bytes()}
    if info.kind == "gguf":
        import llama_cpp  # noqa: F401  (baseline includes the library, not the model)

        phases["libraries"] = current_rss_bytes()
    else:
        import torch  # noqa: F401

        phases["torch"] = current_rss_bytes()
        import transformers

        phases["libraries"] = current_rss_bytes()
        _import_model_class(info, transformers)
    phases["runtime"] = current_rss_bytes()
    return phases


def _import_model_class(info: ModelInfo, transformers: Any) -> None:
    """Import the architecture's modeling module (transformers imports it lazily on first use)."""

    spec = info.spec.removeprefix(BNB_PREFIX)
    config_path = Path(resolve(spec).checkpoint()) / "config.json"
    if not config_path.is_file():
        return
    for arch in json.loads(config_path.read_text(encoding="utf-8")).get("architectures") or []:
        getattr(transformers, arch, None)


def _load_for_decode(info: ModelInfo, threads: int | None = None) -> Any:
    if info.kind == "bnb":
        model, tokenizer = load_bnb_nf4(info.spec.removeprefix(BNB_PREFIX))
        return LoadedModel(info.spec, TransformersBackend(model, tokenizer))
    backend = "llama_cpp" if info.kind == "gguf" else "transformers"
    return load_model(info.spec, backend=backend, threads=threads)


def main(argv: list[str] | None = None) -> int:
    """`python -m lmfoundry.quantize.report_speed '{"spec": ..., "new_tokens": 32, "threads": null}'`:
    one model's speed and peak RSS as one JSON line (what `measure_perf` starts)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lmfoundry.quantize.report_speed '{\"spec\": MODEL}'", file=sys.stderr)
        return 2
    spec = json.loads(args[0])
    try:
        print(json.dumps(_perf(spec["spec"], spec.get("new_tokens", 32), spec.get("threads"))))
    except LmfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
