"""`lmf monitor REFERENCE CURRENT`: has today's traffic drifted from a reference window?"""

from __future__ import annotations

import argparse
from pathlib import Path

from lmfoundry.cli.common import add_json_flag, print_json
from lmfoundry.eval.report_html import fmt_num
from lmfoundry.monitor.drift import MonitorResult
from lmfoundry.monitor.run import DRIFT_EXIT_CODE, MonitorRequest, run_monitor

DESCRIPTION = (
    "Compare a reference window of captured traffic (`lmf serve --capture DB`, or a JSONL file of the same "
    "rows) with a current one: prompt embeddings (MMD, permutation p-value), prompt length, language mix, "
    "requests far from every reference cluster; reply length, empty and refusal rates, a judge's score on "
    "a sample (--judge); latency p95 and tokens per second. Writes report.html (plots) and summary.json. "
    f"Exit code 0: no drift; {DRIFT_EXIT_CODE}: a threshold flagged drift; 1: error. The two windows may "
    "be one file cut by --reference-range and --current-range."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "monitor", help="compare captured traffic with a reference window: input, output and latency drift",
        description=DESCRIPTION,
    )  # fmt: skip
    p.add_argument("reference", help="capture database or JSONL file of the reference window")
    p.add_argument("current", help="capture database or JSONL file of the current window")
    p.add_argument("--reference-range", metavar="START..END",
                   help="time range of the reference window: ISO 8601 times or durations before now (60d..30d)")  # fmt: skip
    p.add_argument(
        "--current-range", metavar="START..END", help="time range of the current window (e.g. 1d..)"
    )
    p.add_argument(
        "--thresholds", metavar="FILE.yaml", help="drift thresholds (configs/monitor/thresholds.yaml)"
    )
    p.add_argument("--out", default="monitor-report", help="folder for report.html and summary.json")
    p.add_argument("--judge", help="judge spec (model, URL or NAME:ARG) to score a sample of replies")
    p.add_argument("--judge-sample", type=int, default=20, help="replies per window the judge scores")
    p.add_argument("--embedder", help="sentence embedder (default all-MiniLM-L6-v2)")
    p.add_argument("--permutations", type=int, default=1000, help="permutations per test (p resolution)")
    p.add_argument("--seed", type=int, default=0)
    add_json_flag(p)
    p.set_defaults(handler=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    from rich.console import Console

    request = MonitorRequest(
        reference=args.reference,
        current=args.current,
        reference_range=args.reference_range,
        current_range=args.current_range,
        thresholds=args.thresholds,
        out=args.out,
        judge=args.judge,
        judge_sample=args.judge_sample,
        embedder=args.embedder,
        permutations=args.permutations,
        seed=args.seed,
    )
    console = Console(stderr=True)
    with console.status("monitoring") as status:
        result, paths = run_monitor(request, progress=lambda step: status.update(step))
    if args.json:
        print_json({**result.summary(), "report": str(paths["html"]), "summary": str(paths["json"])})
    else:
        _print(result, paths)
    return DRIFT_EXIT_CODE if result.drifted else 0


def _print(result: MonitorResult, paths: dict[str, Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("check", "reference", "current", "p-value", "effect", "result")
    for c in result.checks:
        verdict = "[red]DRIFT[/red]" if c.flagged else ("skipped" if c.rule == "skipped" else "ok")
        p = "n/a" if c.p_value is None else f"{c.p_value:.4f}"
        table.add_row(c.name, fmt_num(c.reference), fmt_num(c.current), p, fmt_num(c.effect), verdict)
    console = Console()
    console.print(table)
    verdict = "[red]drift[/red]" if result.drifted else "[green]no drift[/green]"
    console.print(f"{verdict}; report: {paths['html']}")
