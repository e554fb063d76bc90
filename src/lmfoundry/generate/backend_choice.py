"""Which backend `auto` runs a model on, and the GGUF file llama.cpp gets for it.

Measured on SmolLM2-135M (docs/benchmarks.md, "Fast default path"): llama.cpp on a float16 GGUF of
a store entry's fp32 weights keeps greedy agreement and KL against fp32 at rounding level and
decodes several times faster than transformers fp32, while the packaged Q4_1 (and Q8_0) flip
near-tied greedy choices because llama.cpp quantizes activations to 8 bits in quantized matmuls.
So `auto` runs fp32 store and packaged models on that float16 GGUF (made once, cached in the
store folder) whenever no feature needs transformers: PEFT adapters and packed torch weights do,
and so do callers that need the tokenizer or logits (they pass `backend="transformers"`).
"""

from __future__ import annotations

import sys

from lmfoundry import plugins
from lmfoundry.models.fast_gguf import ensure_fast_gguf, unsupported_reason
from lmfoundry.models.load import ResolvedModel


def choose_backend(
    requested: str,
    *,
    kind: str,
    has_gguf: bool,
    has_adapters: bool,
    quantized: bool,
    gguf_only: bool = False,
    fast_gguf: bool = False,
) -> str:
    """Pick a backend for `auto`.

    A bare GGUF file runs on llama.cpp (no conversion needed), and so does a GGUF quantization in
    the store (it has no transformers weights). `fast_gguf`: the entry's fp32 weights can run on
    llama.cpp as float16 (see the module docstring); otherwise store models run on transformers.
    """
    if requested != "auto":
        plugins.get("backend", requested)  # an unknown name is an error naming the known ones
        return requested
    if gguf_only and not has_adapters:
        return "llama_cpp"
    if has_adapters or quantized or not llama_cpp_available():
        return "transformers"
    if (kind == "gguf" and has_gguf) or fast_gguf:
        return "llama_cpp"
    return "transformers"


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def fast_entry(resolved: ResolvedModel, *, has_adapters: bool) -> str | None:
    """The store entry whose float16 GGUF `auto` would run, or None (pulls a packaged model)."""
    if has_adapters or resolved.quantization or resolved.kind not in ("store", "catalog"):
        return None
    if not llama_cpp_available():
        return None
    resolved.checkpoint()  # a packaged model is pulled into the store on first use, as before
    entry = resolved.location
    if unsupported_reason(entry) is not None:
        return None
    try:
        ensure_fast_gguf(entry)
    except OSError as exc:  # e.g. a shared store mounted read-only: slower, but it runs
        print(
            f"lmf: warning: cannot write the float16 GGUF of {entry} ({exc}); running it on "
            "transformers instead (slower; `lmf export gguf` where the store is writable fixes it)",
            file=sys.stderr,
        )
        return None
    return entry


def use_fast_gguf(resolved: ResolvedModel, chosen: str, entry: str | None) -> None:
    """Point `resolved` at the float16 GGUF when llama.cpp runs an fp32 store entry: always under
    `auto`, and for an explicit `--backend llama_cpp` when the entry has no GGUF of its own."""
    if chosen != "llama_cpp":
        return
    if entry is None and resolved.kind == "store" and resolved.gguf is None and not resolved.quantization:
        entry = resolved.location if unsupported_reason(resolved.location) is None else None
    if entry is not None:
        resolved.gguf = ensure_fast_gguf(entry)
