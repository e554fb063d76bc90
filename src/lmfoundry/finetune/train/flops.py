"""Model FLOPs: 6·N·D for training, the machine's measured peak, and their ratio (MFU).

Training a dense transformer of N parameters on D tokens costs about 6·N·D floating-point
operations (2·N·D forward, 4·N·D backward; Kaplan et al. 2020), attention's own term ignored.
MFU = achieved model FLOP/s / peak FLOP/s. The peak is this machine's, measured: the best of a
few large square matmuls (fp32 or bf16) at the current torch thread count, cached per (CPU,
threads, dtype) under $LMF_HOME/cache so only the first run pays ~1 s for it.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from lmfoundry.fsutil import atomic_write_text
from lmfoundry.paths import lmf_home

CHINCHILLA_TOKENS_PER_PARAM = 20
"""Hoffmann et al. 2022: compute-optimal training uses about 20 tokens per parameter."""
BENCH_SIZE = 1024
BENCH_REPEATS = 5


def train_flops(n_params: int, tokens: int) -> float:
    """6·N·D: FLOPs of training N parameters on D tokens."""
    return 6.0 * n_params * tokens


def mfu(n_params: int, tokens: int, seconds: float, peak_flops: float) -> float | None:
    """Model FLOPs utilisation of a run that trained on `tokens` in `seconds`."""
    if seconds <= 0 or peak_flops <= 0:
        return None
    return train_flops(n_params, tokens) / seconds / peak_flops


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_path() -> Path:
    return lmf_home() / "cache" / "peak_flops.json"


def measure_peak_flops(dtype: str = "fp32", size: int = BENCH_SIZE, repeats: int = BENCH_REPEATS) -> float:
    """FLOP/s of the fastest of `repeats` size x size matmuls (after one warm-up)."""
    import torch

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    a = torch.randn(size, size, dtype=torch_dtype)
    b = torch.randn(size, size, dtype=torch_dtype)
    a @ b  # warm-up: thread pool, kernels
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 / best


def peak_flops(dtype: str = "fp32", *, refresh: bool = False) -> float:
    """This machine's measured peak FLOP/s for `dtype` at torch's thread count (cached)."""
    import torch

    key = f"{_cpu_name()}|threads={torch.get_num_threads()}|{dtype}"
    path = _cache_path()
    cached: dict[str, float] = {}
    if path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            cached = {}
    if key in cached and not refresh:
        return float(cached[key])
    value = measure_peak_flops(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({**cached, key: value}, indent=1))
    return value
