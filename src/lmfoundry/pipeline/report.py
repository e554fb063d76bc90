"""The end of a run: a summary table on the terminal and `<workdir>/report.html`.

The HTML report is the evaluation report of the evaluate stage (`lmfoundry.eval.report`: scores
with confidence intervals, latency, per-example drill-down) with a pipeline section on top: the
stages, their times and results, the gate table, the RAG answer with its citations and the
server it runs on.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from lmfoundry.eval.report import CSS, load_report_data, render_html
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.pipeline.execute import PipelineResult, describe

if TYPE_CHECKING:
    from lmfoundry.pipeline.spec import PipelineSpec

REPORT_FILE = "report.html"
_STYLE = "<style>.pipeline td,.pipeline th{border:1px solid #ddd;padding:.3rem .6rem}.failed{color:#c62828}</style>"


def summary_table(result: PipelineResult) -> Table:
    verdict = "[green]finished[/]" if result.ok else f"[bold red]failed at stage {result.failed_stage}[/]"
    table = Table(title=f"pipeline {result.name}: {verdict} in {result.wall_s:.1f}s")
    for column in ("stage", "kind", "status", "time", "result"):
        table.add_column(column)
    for stage in result.stages:
        line = stage.error if stage.status == "failed" else describe(stage.kind, stage.outputs)
        seconds = f"{stage.seconds:.1f}s" if stage.status == "done" or stage.status == "failed" else ""
        table.add_row(stage.name, stage.kind, stage.status, seconds, (line or "")[:120])
    return table


def print_summary(result: PipelineResult, console: Console | None = None) -> None:
    console = console or Console()
    console.print(summary_table(result))
    outputs = result.outputs()
    evaluate = next((o for s in result.stages if s.kind == "evaluate" and (o := outputs.get(s.name))), None)
    for line in baseline_lines(evaluate or {}):
        console.print(line, highlight=False)
    ask = next((o for s in result.stages if s.kind == "rag-ask" and (o := outputs.get(s.name))), None)
    if ask:
        console.print(f"[bold]Q:[/] {ask['question']}\n[bold]A:[/] {ask['answer']}", highlight=False)
        for c in ask["citations"]:
            console.print(f"  [{c['document']}] {c['source']}", highlight=False)
    deploy = next((o for s in result.stages if s.kind == "deploy" and (o := outputs.get(s.name))), None)
    if deploy and deploy.get("pid"):
        console.print(f"server: {deploy['url']}/v1 model {deploy['model_id']} (pid {deploy['pid']}); "
                      "stop it with `lmf pipeline stop PIPELINE.yaml`", highlight=False)  # fmt: skip
    if result.report:
        console.print(f"report: {result.report}", highlight=False)


def baseline_lines(evaluate: dict[str, Any]) -> list[str]:
    """The base model's prompts on the test examples, against the fine-tune (paired CIs, empty rates)."""
    rows = evaluate.get("baselines") or []
    if not rows:
        return []
    lines = [f"base model vs the fine-tune on the same {evaluate.get('n')} test examples:"]
    for row in rows:
        versus = row["challenger_minus_this"]
        lines.append(f"  base {row['prompt']}: {row['score']:.3f} (empty {row['empty_rate']:.0%}); "
                     f"fine-tune minus this {versus['diff']:+.3f} [{versus['ci_low']:+.3f}, {versus['ci_high']:+.3f}]")  # fmt: skip
    return lines


def _pipeline_section(spec: PipelineSpec, result: PipelineResult) -> str:
    e = html.escape
    verdict = (
        "finished"
        if result.ok
        else f'<span class="failed">failed at stage {e(result.failed_stage or "")}</span>'
    )
    rows = "".join(
        f"<tr><td>{e(s.name)}</td><td>{e(s.kind)}</td><td>{e(s.status)}</td>"
        f"<td>{s.seconds:.1f}s</td><td>{e(s.error or describe(s.kind, s.outputs))}</td></tr>"
        for s in result.stages
    )
    parts = [
        f"<h1>Pipeline {e(spec.name)}: {verdict}</h1>",
        f'<p class="meta">{e(str(spec.path))} &middot; work folder {e(result.workdir)} &middot; '
        f"{result.wall_s:.1f}s &middot; {e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>",
        '<table class="pipeline"><tr><th>stage</th><th>kind</th><th>status</th><th>time</th><th>result</th></tr>'
        f"{rows}</table>",
    ]
    if result.details:
        parts.append(f"<h2>Failure details</h2><pre>{e(result.details)}</pre>")
    outputs = result.outputs()
    for stage in result.stages:
        o = outputs.get(stage.name)
        if stage.kind == "gate" and o and Path(o["report"]).is_file():
            parts.append(f"<h2>Gates</h2><pre>{e(Path(o['report']).read_text(encoding='utf-8'))}</pre>")
        if stage.kind == "rag-ask" and o:
            cites = (
                "".join(f"<li>[{c['document']}] {e(c['source'])}</li>" for c in o["citations"])
                or "<li>none</li>"
            )
            parts.append(f"<h2>RAG answer</h2><p><b>Q:</b> {e(o['question'])}</p><pre>{e(o['answer'])}</pre>"
                         f"<p>Citations:</p><ul>{cites}</ul>")  # fmt: skip
        if stage.kind == "deploy" and o:
            parts.append(
                f"<h2>Serving</h2><p>{e(o['model_id'])} at {e(o['url'])}/v1 (version {o['version']})</p>"
            )
    return "\n".join(parts) + "\n<h1>Evaluation</h1>\n"


def write_pipeline_report(spec: PipelineSpec, result: PipelineResult) -> Path:
    """`<workdir>/report.html`: the pipeline section, then the evaluation report if there is one."""

    section = _pipeline_section(spec, result)
    compare_dir = next((o["compare_dir"] for s in result.stages if s.kind == "evaluate"
                        and (o := result.outputs().get(s.name))), None)  # fmt: skip
    if compare_dir and (Path(compare_dir) / "comparison.json").is_file():
        page = render_html(load_report_data(compare_dir))
        page = page.replace("<body>\n", f"<body>\n{_STYLE}\n{section}", 1)
    else:
        page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(spec.name)}'
                f"</title><style>{CSS}</style></head>\n<body>\n{_STYLE}\n{section}</body></html>\n")  # fmt: skip
    path = Path(result.workdir) / REPORT_FILE
    atomic_write_text(path, page)
    return path
