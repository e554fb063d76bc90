"""GGUF quantization through llama.cpp's own quantizer, and facts read back from GGUF files.

The path is: store model (fp32 transformers weights) -> fp32 GGUF written by the project
(`lmfoundry.models.gguf_writer.write_gguf`, the `gguf` library's writer) -> llama.cpp's
`llama_model_quantize` (exposed by llama-cpp-python) -> Q4_K_M / Q4_0 / Q5_K_M / Q8_0 GGUF.

llama.cpp chooses per-tensor types itself: K-quants need rows that are multiples of 256, so a
model with hidden size 576 (SmolLM2-135M) gets its fallbacks (q5_0 / q5_1 / q8_0) for most
tensors. The real mix and the real bits per parameter are therefore read back from the output
file (`gguf_summary`), never assumed from the type's name.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.models.gguf_writer import write_gguf
from lmfoundry.plugins import require

GGUF_TYPES = {
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
}
"""Our name -> llama.cpp's `llama_ftype` constant (the target type of most tensors)."""


def check_gguf_type(kind: str) -> str:
    if kind not in GGUF_TYPES:
        raise InvalidInputError(f"unknown GGUF type {kind!r} (choose from {', '.join(GGUF_TYPES)})")
    return kind


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send the C-level stderr (llama.cpp prints one line per tensor) to a file for the duration."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("wb") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def quantize_gguf(source: Path, target: Path, kind: str, *, threads: int | None = None) -> Path:
    """Quantize an f32/f16 GGUF file into `target` with llama.cpp (target written atomically).

    llama.cpp's per-tensor log (including fallback warnings) goes to `<target>.log`.
    """
    check_gguf_type(kind)
    llama_cpp = require("llama_cpp", extra="llamacpp", package="llama-cpp-python")
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise LmfError(f"GGUF file not found: {source}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, GGUF_TYPES[kind])
    params.nthread = threads or os.cpu_count() or 2
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(tmp_name)
    log = target.with_name(target.name + ".log")
    try:
        with _stderr_to(log):
            code = llama_cpp.llama_model_quantize(
                str(source).encode(), str(tmp).encode(), ctypes.byref(params)
            )
        if code != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise LmfError(
                f"llama.cpp could not quantize {source} to {kind} (code {code}): {' | '.join(tail)}"
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_f32_gguf(model: Any, tokenizer: Any, out: Path, *, name: str, pre: str | None = None) -> Path:
    """The project's own fp32 GGUF of a transformers model: the input llama.cpp quantizes from."""

    return write_gguf(model, tokenizer, out, outtype="f32", name=name, pre=pre)
