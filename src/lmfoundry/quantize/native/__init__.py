"""Native CPU kernel for decode-sized matmuls with quantized weights: y = x @ W.T from the codes.

`qgemv.c` reads the packed 4-bit (nf4/fp4) or int8 codes, looks each code up, scales it by its
block's absmax and multiplies it into the input rows without ever building the fp32 weight. The
torch band path (`linear.matmul`) dequantizes a band with several tensor ops and then calls
BLAS, which costs 10-30 fp32 GEMVs for one input row; this kernel is 5-13x faster than that for
1-8 rows and beats it up to 64 rows (bench/qgemv.py).

Build: compiled on first use with the system C compiler (`$CC`, default `cc`) and portable flags
(no `-march=native`: the AVX2+FMA code is selected at run time inside the library, so the same
build runs on any x86-64 CPU and elsewhere through plain C). The library is cached in
`$LMF_HOME/cache/kernels/` under a hash of the source, flags and compiler version; it is written
to a temporary file and renamed into place, so concurrent processes never load a partial file.
A compiler that refuses `-fopenmp` (clang without libomp) gets a single-threaded build instead.
Without a working compiler one warning is logged and callers keep the torch path.

`LMF_NATIVE_KERNELS=0` turns the kernel off (read at every call); `LMF_NATIVE_SIMD=0` keeps the
kernel but forces its portable C loops (tests, and a way to rule the SIMD code out).

Threads: the rows of W are split across `torch.get_num_threads()` threads with OpenMP. torch's
CPU wheel ships its own `libgomp.so.1` and our library asks for that soname, so with torch loaded
both use one OpenMP runtime and one thread pool rather than two pools spinning against each
other. Measured on the 2-vCPU development VM (SmolLM2-135M, greedy decode of 32 tokens, median
of 5 interleaved rounds, machine otherwise idle), tokens/s: fp32 26.1; nf4 + double quant with
this OpenMP kernel 35.8, with the kernel single-threaded (torch still on 2 threads) 25.9, with
two pthreads started per call 19.2; everything on 1 thread: fp32 16.6, nf4 23.4. When another
job keeps one of the two cores busy, every 2-thread variant, fp32 included, drops to 1-4
tokens/s (fork-join waits on a descheduled thread) and 1 thread is the cure for all of them
alike (`torch.set_num_threads(1)`, `--threads 1`); the kernel follows torch's setting.

Importing this module imports neither torch nor the compiler; both happen on the first call.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.paths import lmf_home
from lmfoundry.quantize import blockwise as qb

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("qgemv.c")
FLAGS = ("-O3", "-std=gnu11", "-shared", "-fPIC", "-fopenmp")
MAX_ROWS, MAX_BLOCK = 128, 4096  # qgemv.c's own limits; callers choose their own row threshold
KIND_4BIT, KIND_INT8 = 0, 1  # `kind` argument of qgemv()
METHOD_KINDS = {"nf4": KIND_4BIT, "fp4": KIND_4BIT, "int8": KIND_INT8}

counts = {"calls": 0, "compiles": 0}
"""Kernel matmuls run and compiler invocations in this process (tests and benchmarks read them)."""

_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}


def enabled() -> bool:
    """False when `LMF_NATIVE_KERNELS=0` (checked at every call, so it can be flipped at run time)."""
    return os.environ.get("LMF_NATIVE_KERNELS", "1") != "0"


def cache_dir() -> Path:
    return lmf_home() / "cache" / "kernels"


def compiler() -> list[str]:
    """`$CC` split like a shell would (`ccache gcc` works), default `cc`."""
    return shlex.split(os.environ.get("CC", "")) or ["cc"]


def reset() -> None:
    """Forget the loaded library (and a failed attempt), so the next call builds or loads again."""
    with _lock:
        _loaded.clear()


def library() -> ctypes.CDLL | None:
    """The kernel library, compiled if needed; None (after one warning) when it cannot be built."""
    with _lock:
        if "lib" not in _loaded:
            _loaded["lib"] = _build_and_load()
        return _loaded["lib"]


def _build_and_load() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(str(_build_with_or_without_openmp()))
        _declare(lib)
    except (OSError, ValueError, AttributeError, subprocess.SubprocessError, RuntimeError) as exc:
        log.warning("native 4-bit/int8 kernels unavailable (%s); using the slower torch path", exc)
        return None
    return lib


def _build_with_or_without_openmp() -> Path:
    """Build with OpenMP; a compiler without it (clang lacking libomp) still gets a 1-thread kernel."""
    try:
        return _cached_build(FLAGS)
    except RuntimeError as first:
        serial = tuple(flag for flag in FLAGS if flag != "-fopenmp")
        if serial == FLAGS:
            raise
        try:
            path = _cached_build(serial)
        except RuntimeError:
            raise first from None
        log.info("native kernel built without OpenMP (single-threaded): %s", first)
        return path


def _cached_build(flags: tuple[str, ...]) -> Path:
    """Path of the compiled library for this source, flags, compiler and machine; compiled if missing."""
    cc = compiler()
    parts = [
        SOURCE.read_bytes(),
        " ".join([*cc, *flags]).encode(),
        platform.machine().encode(),
        _cc_version(cc),
    ]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    target = cache_dir() / f"qgemv-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".qgemv-", suffix=".so")
    os.close(fd)
    try:
        counts["compiles"] += 1
        proc = subprocess.run(
            [*cc, *flags, "-o", tmp, str(SOURCE)], capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0 or os.path.getsize(tmp) == 0:
            head = " | ".join(proc.stderr.strip().splitlines()[:3]) or f"exit status {proc.returncode}"
            raise RuntimeError(f"{shlex.join(cc)} failed: {head}")
        os.replace(tmp, target)  # atomic: a concurrent process sees no file or a whole one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _cc_version(cc: list[str]) -> bytes:
    """The compiler's `--version` output: part of the cache key, so a new compiler rebuilds."""
    try:
        proc = subprocess.run([*cc, "--version"], capture_output=True, timeout=30, check=False)
    except FileNotFoundError as exc:
        raise RuntimeError(f"no C compiler: {shlex.join(cc)!r} not found") from exc
    return proc.stdout


def _declare(lib: ctypes.CDLL) -> None:
    ptr, i64, cint = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    # kind, q, codebook, absmax, dq_codes, dq_map, dq_scales, dq_offset, dq_block, x, y, M, N, K, bs,
    # nthreads, simd
    lib.qgemv.argtypes = [cint, *[ptr] * 7, i64, ptr, ptr, *[i64] * 4, cint, cint]
    lib.qgemv.restype = cint
    lib.qgemv_simd_available.argtypes = []
    lib.qgemv_simd_available.restype = cint


def supports(layer: Any, rows: int) -> bool:
    """Shapes the kernel handles: whole blocks per weight row, 16-value steps, at most MAX_ROWS rows."""
    bs = layer.block_size
    return (
        layer.method in METHOD_KINDS
        and bs % 16 == 0
        and bs <= MAX_BLOCK
        and layer.in_features % bs == 0
        and 1 <= rows <= MAX_ROWS
    )


def quant_matmul(layer: Any, x2d: torch.Tensor) -> torch.Tensor | None:
    """x2d @ W.T from a QuantLinear's codes, or None when the kernel is off, unbuilt or not applicable.

    `layer` is a `QuantLinear` (`linear.quant_linear_class()`); its buffers and `x2d` ([M, in_features] fp32) must be
    on CPU, else None. Double-quantized absmax codes are decoded inside the kernel, block by block
    (undoing them with torch ops first would cost a third of a decode-sized matmul).
    """
    import torch

    if not (enabled() and _input_ok(x2d, layer) and supports(layer, x2d.shape[0])):
        return None
    weights = _weight_args(layer)
    lib = library() if weights is not None else None
    if weights is None or lib is None:
        return None
    x2d = x2d.contiguous()
    rows, cols = x2d.shape
    out = torch.empty(rows, layer.out_features, dtype=torch.float32)
    status = lib.qgemv(
        *weights, x2d.data_ptr(), out.data_ptr(), rows, layer.out_features, cols, layer.block_size,
        torch.get_num_threads(), _simd(),
    )  # fmt: skip
    if status != 0:
        return None
    counts["calls"] += 1
    return out


def _input_ok(x2d: torch.Tensor, layer: Any) -> bool:
    import torch

    return x2d.dim() == 2 and x2d.shape[1] == layer.in_features and x2d.dtype == torch.float32 and x2d.is_cpu


def _weight_args(layer: Any) -> tuple[int | None, ...] | None:
    """qgemv's leading arguments (kind, then pointers) for `layer`, or None when its buffers are
    not in the dtypes and layout the C code reads (a layer cast with `.half()`, say)."""
    import torch

    buffers = layer._buffers  # one dict lookup instead of nn.Module.__getattr__ per buffer
    qweight, absmax = buffers["qweight"], buffers["absmax"]
    kind = METHOD_KINDS[layer.method]
    n = layer.in_features * layer.out_features
    if (
        qweight.dtype != (torch.uint8 if kind == KIND_4BIT else torch.int8)
        or qweight.numel() * (2 if kind == KIND_4BIT else 1) < n
        or absmax.numel() * layer.block_size < n
        or not (qweight.is_cpu and absmax.is_cpu and qweight.is_contiguous() and absmax.is_contiguous())
    ):
        return None
    table = qb.codebook(layer.method).data_ptr() if kind == KIND_4BIT else None
    if not layer.double_quant:
        ok = absmax.dtype == torch.float32
        return (kind, qweight.data_ptr(), table, absmax.data_ptr(), None, None, None, None, 0) if ok else None
    scales, offset = buffers["absmax_scale"], buffers["absmax_offset"]
    if not (
        absmax.dtype == torch.uint8
        and scales.dtype == offset.dtype == torch.float32
        and scales.numel() * qb.DQ_BLOCK >= absmax.numel()
        and scales.is_cpu
        and offset.is_cpu
    ):
        return None
    dq = (absmax, qb.dynamic_map(), scales, offset)
    return (kind, qweight.data_ptr(), table, None, *(t.data_ptr() for t in dq), qb.DQ_BLOCK)


def _simd() -> int:
    return 0 if os.environ.get("LMF_NATIVE_SIMD", "1") == "0" else 1
