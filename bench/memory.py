"""Estimate vs measured peak RSS for the packaged model over a grid of workloads; one JSON line.

Run: `python bench/memory.py` (a few minutes on 2 CPU cores; each setting runs in its own
subprocess, see lmfoundry.memory.measure). `--markdown` also prints the table for
docs/benchmarks-memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from lmfoundry.memory.planner import Workload, plan

DEFAULT_GRID = [
    (mode, seq, batch) for mode in ("inference", "lora") for batch in (1, 4) for seq in (128, 256, 512)
]


def run(model: str, grid: list[tuple[str, int, int]]) -> dict:
    from rich.progress import track

    rows = []
    for mode, seq, batch in track(grid, description="measuring", console=None, transient=True):
        result = plan(model, Workload(mode=mode, seq_len=seq, batch=batch), measure_peak=True)
        rows.append(
            {
                "mode": mode,
                "seq_len": seq,
                "batch": batch,
                "estimate_bytes": result["total_bytes"],
                "measured_peak_bytes": result["measured_peak_bytes"],
                "ratio": result["ratio"],
                "rule_of_thumb_bytes": result["rule_of_thumb_bytes"],
                "components": result["components"],
                "seconds": result["measure"]["seconds"],
                "command": f"lmf estimate {model} --mode {mode} --seq-len {seq} --batch {batch} --measure",
            }
        )
    ratios = [r["ratio"] for r in rows]
    return {
        "bench": "memory",
        "model": model,
        "python": platform.python_version(),
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "rows": rows,
        "max_abs_error": round(max(abs(r - 1) for r in ratios), 4),
        "within_15_percent": all(0.85 <= r <= 1.15 for r in ratios),
        "unix_time": int(time.time()),
    }


def markdown(report: dict) -> str:
    mib = 2**20
    lines = [
        "| mode | seq | batch | estimate (MiB) | measured (MiB) | ratio | rule of thumb (MiB) | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['mode']} | {r['seq_len']} | {r['batch']} | {r['estimate_bytes'] / mib:,.0f} | "
            f"{r['measured_peak_bytes'] / mib:,.0f} | {r['ratio']:.3f} | {r['rule_of_thumb_bytes'] / mib:,.0f} | "
            f"`{r['command']}` |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--modes", default="inference,lora", help="comma-separated modes to run")
    parser.add_argument("--markdown", action="store_true", help="also print a markdown table on stderr")
    args = parser.parse_args()
    modes = set(args.modes.split(","))
    report = run(args.model, [g for g in DEFAULT_GRID if g[0] in modes])
    print(json.dumps(report))
    if args.markdown:
        print(markdown(report), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
