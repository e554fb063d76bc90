"""Quantization on the packaged model: size, quality vs fp32, decode speed and peak RSS, in one run.

Creates (once; `--force` to redo) int8, nf4, nf4 + double quant, fp4, gguf q8_0 and gguf q4_k_m
copies of the model in the store, plus nf4 + double quant and int8 with the embedding and output
head quantized too (`--quantize-embeddings`, int8 or nf4), and nf4 + double quant (with and without
int8 embeddings) calibrated with GPTQ (`--gptq`, default calibration text), then runs the quality report
(`lmf quantize report`) on them with the fp32 model as reference and bitsandbytes NF4
(transformers `BitsAndBytesConfig`, CPU) as the named baseline. Each model's decode speed and peak
RSS come from its own fresh process, which also records the RSS of the bare runtime (python,
torch, transformers, the model class) before any weights load.

    .venv/bin/python bench/quantize.py [--model smollm2-135m-instruct] [--tokens 2048] [--out bench/out]
        [--only nf4-dq,nf4-dq-emb-int8,int8-emb-int8,q4_k_m] [--no-bnb]

Prints one JSON line; writes quantize_report.json/.png into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

VARIANTS = [  # (method, double quant, embeddings, GPTQ)
    ("int8", False, None, False),
    ("nf4", False, None, False),
    ("nf4", True, None, False),
    ("nf4", True, None, True),
    ("fp4", False, None, False),
    ("gguf-q8_0", False, None, False),
    ("gguf-q4_k_m", False, None, False),
    ("nf4", True, "int8", False),
    ("nf4", True, "int8", True),
    ("nf4", True, "nf4", False),
    ("int8", False, "int8", False),
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--no-bnb", action="store_true", help="skip the bitsandbytes baseline")
    parser.add_argument(
        "--threads", type=int, help="compute threads of the speed runs, every model alike (default all cores)"
    )
    parser.add_argument("--force", action="store_true", help="re-create the quantized entries")
    parser.add_argument(
        "--only",
        help="comma-separated variant suffixes to run (e.g. nf4-dq,nf4-dq-emb-int8,q4_k_m); default all",
    )
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()

    from lmfoundry.models import store
    from lmfoundry.quantize.gptq import CalibrationSource
    from lmfoundry.quantize.report import build_report, write_outputs
    from lmfoundry.quantize.report_quality import BNB_PREFIX, QualitySettings
    from lmfoundry.quantize.store_entry import create_quantized, default_quant_name

    def step(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # the quality scoring in this process too
    store.pull(args.model)
    prefix = store.default_name(args.model) + "-"
    wanted = set(args.only.split(",")) if args.only else None
    names, quantize_s = [], {}
    for method, dq, emb, gptq in VARIANTS:
        name = default_quant_name(args.model, method, dq, emb, gptq)
        if wanted is not None and name.removeprefix(prefix) not in wanted:
            continue
        if args.force or not store.is_pulled(name):
            start = time.perf_counter()
            create_quantized(
                args.model,
                method,
                double_quant=dq,
                name=name,
                force=True,
                on_step=step,
                embeddings=emb,
                calibration=CalibrationSource() if gptq else None,
            )
            quantize_s[name] = time.perf_counter() - start
        names.append(name)
    models = [args.model, *names] + ([] if args.no_bnb else [BNB_PREFIX + args.model])
    settings = QualitySettings(tokens=args.tokens, window=args.window)
    rows = build_report(
        models,
        reference=args.model,
        settings=settings,
        new_tokens=args.new_tokens,
        step=step,
        perf_threads=args.threads,
    )
    paths = write_outputs(rows, Path(args.out))
    fp32 = rows[0]
    for row in rows:
        row["peak_rss_vs_fp32"] = row["peak_rss_bytes"] / fp32["peak_rss_bytes"]
        row["model_rss_vs_fp32"] = row["model_rss_bytes"] / fp32["model_rss_bytes"]
        row["model_only_rss_vs_fp32"] = row["model_only_rss_bytes"] / fp32["model_only_rss_bytes"]
        row["speed_vs_fp32"] = row["tokens_per_s"] / fp32["tokens_per_s"] if fp32["tokens_per_s"] else None
    print(json.dumps({"bench": "quantize", "model": args.model, "tokens": args.tokens, "threads": args.threads,
                      "quantize_s": quantize_s,
                      "models": rows, "json": str(paths["json"]), "png": str(paths["png"])}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
