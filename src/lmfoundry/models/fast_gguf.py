"""The fast default path: a float16 GGUF of a store entry's fp32 weights, for llama.cpp.

Why float16 and not the packaged Q4_1 or a Q8_0: llama.cpp quantizes activations to 8 bits in its
quantized matmuls, which flips near-tied greedy choices of small models; in its F16 matmuls the
activations stay 16-bit floats, so the F16 file computes (nearly) the fp32 model's function at
several times transformers' decode speed (docs/benchmarks.md, "Fast default path").

The file is `model-f16.gguf` in the entry's folder (the name `lmf export gguf NAME --outtype f16`
writes, so either creates it for the other), made once on first use: entries pulled before this
existed get it too. Concurrent first uses take a lock file, so one process writes and the others
wait and reuse its file; the writer finishes with a rename, so a reader never sees half a file.
"""

from __future__ import annotations

import fcntl
import json
import sys
from collections.abc import Callable
from pathlib import Path

from lmfoundry.errors import LmfError
from lmfoundry.models import store
from lmfoundry.models.gguf_writer import ARCHS, store_pre_tokenizer, write_gguf
from lmfoundry.models.load import load_hf_model

FAST_GGUF = "model-f16.gguf"


def fast_gguf_path(name: str) -> Path:
    return store.entry_dir(name) / FAST_GGUF


def unsupported_reason(name: str) -> str | None:
    """Why store entry `name` cannot get a fast GGUF (None when it can), without loading weights.

    Quantized entries keep their own format; the writer knows Llama/Qwen2 and BPE tokenizers."""
    if not store.is_pulled(name):
        return f"{name} is not in the store"
    if store.read_manifest(name).quantization:
        return f"{name} is a quantized entry (its own weights format)"
    folder = store.entry_dir(name)
    config = _json(folder / "config.json")
    architecture = (config.get("architectures") or [None])[0]
    if architecture not in ARCHS:
        return f"the GGUF writer handles {', '.join(ARCHS)}, not {architecture}"
    rope = config.get("rope_scaling") or {}
    if isinstance(rope, dict) and rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        return "the GGUF writer does not handle rope scaling"
    tokenizer = _json(folder / "tokenizer.json")
    if (tokenizer.get("model") or {}).get("type") != "BPE":
        return "the GGUF writer handles BPE tokenizers (tokenizer.json) only"
    return None


def _json(path: Path) -> dict:  # type: ignore[type-arg]
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_fast_gguf(name: str, *, progress: Callable[[str], None] = _stderr) -> Path:
    """The entry's float16 GGUF, written once (a few seconds for a 135M model) and then reused."""
    target = fast_gguf_path(name)
    if target.is_file():
        return target
    reason = unsupported_reason(name)
    if reason is not None:
        raise LmfError(f"cannot make a float16 GGUF of {name}: {reason}")
    lock_path = target.with_name(f".{FAST_GGUF}.lock")
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent first use waits here, then finds the file
        try:
            if not target.is_file():
                progress(f"creating {target} for llama.cpp (once; later loads reuse it)...")
                model, tokenizer = load_hf_model(name)
                write_gguf(model, tokenizer, target, outtype="f16", name=name, pre=store_pre_tokenizer(name))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target
