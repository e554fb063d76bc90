"""Output helpers of the `lmf eval` subcommands: tables, number formatting, default folders, reports."""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmfoundry.eval.report import write_report
from lmfoundry.paths import lmf_home


def default_out(kind: str, task: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", task)[-60:]
    return lmf_home() / "runs" / kind / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"


def print_written_report(report: dict[str, str]) -> None:
    if report:
        print(f"wrote {report['report']}")


def maybe_report(args: argparse.Namespace, out: Path) -> dict[str, str]:
    if not args.report:
        return {}

    html_path, _ = write_report(out)
    return {"report": str(html_path)}


def latency_rows(latency: dict[str, Any]) -> list[tuple[str, str]]:
    cost = latency.get("cost_per_1m_tokens")
    return [
        ("ttft p50 / p95 (s)", f"{latency['ttft_s']['p50']:.3f} / {latency['ttft_s']['p95']:.3f}"),
        ("e2e p50 / p95 (s)", f"{latency['e2e_s']['p50']:.3f} / {latency['e2e_s']['p95']:.3f}"),
        ("throughput (tokens/s)", f"{latency['throughput_tokens_per_s']:.1f}"),
        ("cost per 1M tokens (USD)", "n/a" if cost is None else f"{cost:.2f}"),
    ]


PIPE_WIDTH = 160
"""Table width when stdout is not a terminal (`COLUMNS` still wins where it is set)."""


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:  # a log or a pipe: 80 columns fold cells
        console = Console(width=PIPE_WIDTH)
    console.print(table)


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value) if not isinstance(value, dict) else json.dumps(value)
