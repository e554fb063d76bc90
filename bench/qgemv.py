"""Native quantized GEMV kernel vs the torch band path vs fp32, per layer and end to end, in one run.

(a) Per layer: nf4 + double quant, block 64, shapes 576->1536 and 1536->576 (SmolLM2-135M's
    MLP sizes), M = 1, 8, 64 and 96 input rows: fp32 `F.linear` on the dequantized weight, our
    torch band path (`LMF_NATIVE_KERNELS=0`) and the native kernel; median of `--reps` calls.
(b) End to end: greedy decode tokens/s of the packaged model in fp32 and of a copy quantized with
    `quantize_model(model, "nf4", double_quant=True)`, with the kernel and with
    `LMF_NATIVE_KERNELS=0`; the three take turns `--repeats` times (median), same prompt.

    .venv/bin/python bench/qgemv.py [--model smollm2-135m-instruct] [--new-tokens 64] [--threads N]

Prints one JSON line (ratios are vs fp32: time for layers, tokens/s for decode).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

SHAPES = [(576, 1536), (1536, 576)]  # (in_features, out_features)
ROWS = [1, 8, 64, 96]  # 64 = quant_linear.NATIVE_MAX_ROWS; past it the band path takes over


def median_ms(fn: Callable[[], Any], reps: int) -> float:
    for _ in range(max(3, reps // 10)):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def kernel_switch(on: bool) -> None:
    os.environ["LMF_NATIVE_KERNELS"] = "1" if on else "0"


def layer_bench(reps: int) -> list[dict[str, Any]]:
    """Times of one layer: fp32 F.linear, the band path and the kernel (also past NATIVE_MAX_ROWS)."""
    import torch

    from lmfoundry.quantize import native
    from lmfoundry.quantize.linear import matmul, quant_linear_class

    torch.manual_seed(0)
    rows = []
    for in_f, out_f in SHAPES:
        layer = quant_linear_class().from_linear(torch.nn.Linear(in_f, out_f), "nf4", 64, True)
        weight = layer.dequantize_weight()
        for m in ROWS:
            x = torch.randn(m, in_f)
            if native.quant_matmul(layer, x) is None:
                raise SystemExit("the native kernel did not run (no compiler?)")
            fp32 = median_ms(lambda: torch.nn.functional.linear(x, weight), reps)  # noqa: B023
            kernel_switch(False)
            band = median_ms(lambda: matmul(layer, x), reps)  # noqa: B023
            kernel_switch(True)
            fast = median_ms(lambda: native.quant_matmul(layer, x), reps)  # noqa: B023
            rows.append({"in": in_f, "out": out_f, "rows": m, "fp32_ms": fp32, "band_ms": band,
                         "native_ms": fast, "band_vs_fp32": band / fp32, "native_vs_fp32": fast / fp32,
                         "native_speedup_vs_band": band / fast})  # fmt: skip
    return rows


def decode_tokens_per_s(loaded: Any, new_tokens: int) -> float:
    from lmfoundry.quantize.report_speed import PERF_PROMPT

    loaded.generate(PERF_PROMPT, temperature=0.0, max_new_tokens=2)  # warm-up
    return float(loaded.generate(PERF_PROMPT, temperature=0.0, max_new_tokens=new_tokens).tokens_per_s)


def decode_bench(model_name: str, new_tokens: int, repeats: int) -> dict[str, Any]:
    """Median tokens/s per variant; the variants take turns, so a slow spell on a shared machine
    hits all of them rather than one."""
    import copy

    from lmfoundry.generate.engine import LoadedModel
    from lmfoundry.generate.hf_backend import TransformersBackend
    from lmfoundry.models.load import load_hf_model
    from lmfoundry.quantize.modules import quantize_model

    model, tokenizer = load_hf_model(model_name)
    quantized = copy.deepcopy(model)
    quantize_model(quantized, "nf4", double_quant=True)
    fp32 = LoadedModel(model_name, TransformersBackend(model, tokenizer))
    nf4 = LoadedModel(model_name, TransformersBackend(quantized, tokenizer))
    runs: dict[str, list[float]] = {"fp32": [], "nf4_dq_native": [], "nf4_dq_band": []}
    for _ in range(repeats):
        runs["fp32"].append(decode_tokens_per_s(fp32, new_tokens))
        kernel_switch(True)
        runs["nf4_dq_native"].append(decode_tokens_per_s(nf4, new_tokens))
        kernel_switch(False)
        runs["nf4_dq_band"].append(decode_tokens_per_s(nf4, new_tokens))
        kernel_switch(True)
    tps = {name: statistics.median(values) for name, values in runs.items()}
    return {**{f"{name}_tokens_per_s": value for name, value in tps.items()},
            "native_vs_fp32": tps["nf4_dq_native"] / tps["fp32"], "band_vs_fp32": tps["nf4_dq_band"] / tps["fp32"],
            "native_speedup_vs_band": tps["nf4_dq_native"] / tps["nf4_dq_band"],
            "runs": {name: [round(v, 2) for v in values] for name, values in runs.items()}}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="decodes per variant (median)")
    parser.add_argument("--reps", type=int, default=300, help="calls per layer timing (median)")
    parser.add_argument("--threads", type=int, help="torch (and kernel) threads; default all cores")
    args = parser.parse_args()

    import torch

    from lmfoundry.models import store
    from lmfoundry.quantize import native

    if args.threads:
        torch.set_num_threads(args.threads)
    store.pull(args.model)
    load_start = os.getloadavg()
    layers = layer_bench(args.reps)
    decode = decode_bench(args.model, args.new_tokens, args.repeats)
    print(json.dumps({"bench": "qgemv", "model": args.model, "threads": torch.get_num_threads(),
                      "load_avg_start": load_start, "load_avg_end": os.getloadavg(), "new_tokens": args.new_tokens,
                      "simd": bool(native.library().qgemv_simd_available()),  # type: ignore[union-attr]
                      "layers": layers, "decode": decode}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
