"""A self-contained HTML report of an evaluation run or a champion-vs-challenger comparison.

One file that opens anywhere (a CI artifact, an email attachment): CSS inline, figures inline as
base64 PNG (matplotlib's Agg renderer through `Figure`, no pyplot state, no display needed), no
scripts or network. `report.json` beside it holds the same numbers for machines.

Input is a folder written by `lmf eval run` (results.json + outputs.jsonl) or `lmf eval compare`
(comparison.json + champion/ + challenger/); a `judge.json` from `lmf eval judge --out` in the
same folder adds a judge section.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import LmfError
from lmfoundry.eval.compare import load_comparison
from lmfoundry.eval.evaluate import EvalResult
from lmfoundry.fsutil import atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lmfoundry.eval.evaluate import EvalResult

MAX_EXAMPLES = 500
"""Per-example drill-down entries; beyond this the report says how many were left out."""
LATENCY_ROWS = (
    ("ttft_s", "TTFT (s)"),
    ("tpot_s", "TPOT (s)"),
    ("e2e_s", "end-to-end (s)"),
    ("tokens_per_s", "tokens/s"),
)
COLORS = ("#4c72b0", "#dd8452")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
 color:#222;padding:0 1rem;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9rem}table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}.pos{color:#1a7f37}.neg{color:#c62828}
img{max-width:100%;height:auto;display:block;margin:.6rem 0}
details{border:1px solid #ddd;border-radius:4px;margin:.3rem 0;padding:.3rem .6rem}
summary{cursor:pointer}pre{white-space:pre-wrap;background:#f8f8f8;padding:.5rem;margin:.2rem 0;
 max-height:20rem;overflow:auto}.label{font-weight:600;margin-top:.4rem}.note{color:#666;font-size:.9rem}
"""


@dataclass
class ReportData:
    """What a report shows: one run, or two runs plus their comparison; optionally judge results."""

    kind: str
    """"run" or "compare"."""
    runs: dict[str, EvalResult]
    """{"run": result} or {"champion": ..., "challenger": ...}."""
    comparison: dict[str, Any] | None = None
    judge: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The report's numbers (no per-example text) for `report.json`."""
        return _finite(
            {
                "kind": self.kind,
                "runs": {name: r.summary() for name, r in self.runs.items()},
                "per_example_scores": {
                    name: {o.id: o.scores for o in r.outputs} for name, r in self.runs.items()
                },
                "comparison": self.comparison,
                "judge": _judge_summary(self.judge),
            }
        )


def load_report_data(path: str | Path) -> ReportData:
    """Read a run folder or a compare folder (see the module docstring)."""

    folder = Path(path)
    if not folder.is_dir():
        raise LmfError(f"report input must be a folder from `lmf eval run` or `lmf eval compare`: {folder}")
    judge = _read_judge(folder / "judge.json")
    if (folder / "comparison.json").is_file():
        runs = {name: EvalResult.load(folder / name) for name in ("champion", "challenger")}
        return ReportData("compare", runs, load_comparison(folder / "comparison.json"), judge)
    if (folder / "results.json").is_file():
        return ReportData("run", {"run": EvalResult.load(folder)}, None, judge)
    raise LmfError(f"{folder} has neither results.json (a run) nor comparison.json (a comparison)")


def write_report(path: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """Render the folder's report to `out` (default PATH/report.html) and `report.json` beside it."""
    data = load_report_data(path)
    html_path = Path(out) if out else Path(path) / "report.html"
    json_path = html_path.with_suffix(".json")
    atomic_write_text(html_path, render_html(data))
    atomic_write_text(json_path, json.dumps(data.to_json(), indent=2, allow_nan=False) + "\n")
    return html_path, json_path


def render_html(data: ReportData) -> str:
    """The whole report as one HTML string."""
    first = next(iter(data.runs.values()))
    title = (
        f"{first.task}: {data.runs['champion'].model} vs {data.runs['challenger'].model}"
        if data.kind == "compare"
        else f"{first.task}: {first.model}"
    )
    sections = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{len(first.outputs)} examples &middot; generated {_e(time.strftime("%Y-%m-%d %H:%M:%S"))}</p>',
        _scores_section(data),
        _latency_section(data),
        _judge_section(data.judge),
        _distribution_section(data),
        _examples_section(data),
    ]
    body = "\n".join(s for s in sections if s)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


# ---------------------------------------------------------------------------------------------
# Sections


def _scores_section(data: ReportData) -> str:
    if data.kind == "run":
        rows = [[_e(k), _num(v)] for k, v in data.runs["run"].aggregates.items()]
        return "<h2>Scores</h2>" + _table(["metric", "mean"], rows)
    assert data.comparison is not None
    confidence = data.comparison.get("confidence", 0.95)
    rows = []
    for name, m in data.comparison["metrics"].items():
        css = "pos" if m["ci_low"] > 0 else "neg" if m["ci_high"] < 0 else ""
        rows.append(
            [_e(name), _num(m["champion"]), _num(m["challenger"]),
             f'<span class="{css}">{m["diff"]:+.4f}</span>',
             f"[{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]", f"{m['wins']}/{m['ties']}/{m['losses']}"]
        )  # fmt: skip
    header = ["metric", "champion", "challenger", "diff", f"{confidence:.0%} CI", "W/T/L"]
    note = (
        f'<p class="note">Paired bootstrap over {data.comparison["n"]} examples '
        f"({data.comparison.get('n_boot', '?')} resamples); green: CI above 0, red: CI below 0.</p>"
    )
    return (
        "<h2>Champion vs challenger</h2>"
        + _table(header, rows)
        + note
        + _img(_ci_figure(data.comparison), "CI bars")
    )


def _latency_section(data: ReportData) -> str:
    names = list(data.runs)
    many = len(names) > 1
    rows = [
        [f"{label} &middot; {_e(name)}" if many else label,
         *(_num(data.runs[name].latency[key][stat]) for stat in ("mean", "p50", "p95", "p99"))]
        for key, label in LATENCY_ROWS
        for name in names
    ]  # fmt: skip
    totals = [
        [label, *(_num(data.runs[n].latency.get(key)) for n in names)]
        for key, label in (("throughput_tokens_per_s", "throughput (tokens/s)"),
                           ("price_per_hour", "price per hour (USD)"),
                           ("cost_per_1m_tokens", "cost per 1M tokens (USD)"))
    ]  # fmt: skip
    figure = _img(_latency_figure(data), "latency histograms")
    return (
        "<h2>Latency and cost</h2>"
        + _table(["", "mean", "p50", "p95", "p99"], rows)
        + _table(["", *names], totals)
        + figure
    )


def _judge_section(judge: dict[str, Any] | None) -> str:
    if not judge:
        return ""
    summary = judge["summary"]
    rows = [[_e(k), _num(v) if not isinstance(v, dict) else _e(json.dumps(v))] for k, v in summary.items()]
    variance = judge.get("variance", {})
    rows += [
        [f"{judge['headline']} across {judge['repeats']} repeats: {k}", _num(v)] for k, v in variance.items()
    ]
    who = (
        f" ({_e(judge.get('model_a', 'a'))} = a, {_e(judge.get('model_b', 'b'))} = b)"
        if judge["mode"] == "pairwise"
        else ""
    )
    note = (
        f'<p class="note">Judge: {_e(judge.get("judge", "?"))}{who}. Unparseable judgments '
        f"({judge['n_unparseable']}) are counted and excluded from the means.</p>"
    )
    return f"<h2>Judge ({_e(judge['mode'])})</h2>" + note + _table(["", "value"], rows)


def _distribution_section(data: ReportData) -> str:
    figure = _distribution_figure(data)
    return "<h2>Score distributions</h2>" + _img(figure, "score distributions") if figure else ""


def _examples_section(data: ReportData) -> str:
    names = list(data.runs)
    by_name = {n: {o.id: o for o in data.runs[n].outputs} for n in names}
    first = data.runs[names[0]].outputs
    blocks = []
    for output in first[:MAX_EXAMPLES]:
        parts = [_field("input", output.input), _field("reference", output.reference)]
        headline = []
        for name in names:
            o = by_name[name].get(output.id)
            if o is None:
                continue
            label = "output" if len(names) == 1 else f"{name} output"
            parts.append(_field(label, o.output))
            parts.append(_table(["score", "value"], [[_e(k), _num(v)] for k, v in o.scores.items()]))
            parts.append(f'<p class="note">{_e(name)}: {o.latency.get("total_s", 0):.3f}s, '
                         f'{int(o.latency.get("completion_tokens", 0))} tokens</p>')  # fmt: skip
            scores = " ".join(f"{k}={v:.3f}" for k, v in list(o.scores.items())[:3])
            headline.append(f"{name}: {scores}" if len(names) > 1 else scores)
        summary = f"<summary><b>{_e(output.id)}</b> &mdash; {_e(' | '.join(headline))}</summary>"
        blocks.append(f"<details>{summary}{''.join(parts)}</details>")
    more = len(first) - MAX_EXAMPLES
    tail = f'<p class="note">{more} more examples are in outputs.jsonl.</p>' if more > 0 else ""
    return "<h2>Examples</h2>" + "\n".join(blocks) + tail


# ---------------------------------------------------------------------------------------------
# Figures


def _ci_figure(comparison: dict[str, Any]) -> Figure:
    from matplotlib.figure import Figure

    names = list(comparison["metrics"])
    metrics = [comparison["metrics"][n] for n in names]
    diffs = [m["diff"] for m in metrics]
    errors = [[m["diff"] - m["ci_low"] for m in metrics], [m["ci_high"] - m["diff"] for m in metrics]]
    figure = Figure(figsize=(7, 0.5 + 0.45 * len(names)), dpi=100)
    axes = figure.add_subplot()
    axes.errorbar(diffs, range(len(names)), xerr=errors, fmt="o", color=COLORS[0], capsize=4)
    axes.axvline(0, color="#888", linewidth=1)
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.set_xlabel(f"challenger - champion ({comparison.get('confidence', 0.95):.0%} CI)")
    figure.tight_layout()
    return figure


def _latency_figure(data: ReportData) -> Figure:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3), dpi=100)
    for index, (key, label) in enumerate((("ttft_s", "TTFT (s)"), ("total_s", "end-to-end (s)"))):
        axes = figure.add_subplot(1, 2, index + 1)
        columns = {name: [o.latency.get(key, 0.0) for o in r.outputs] for name, r in data.runs.items()}
        low, high = _span([v for values in columns.values() for v in values])
        for color, (name, values) in zip(COLORS, columns.items(), strict=False):
            axes.hist(
                values,
                bins=min(20, max(len(values), 1)),
                range=(low, high),
                alpha=0.6,
                color=color,
                label=name,
            )
        axes.set_xlabel(label)
        axes.set_ylabel("requests")
        if len(data.runs) > 1:
            axes.legend()
    figure.tight_layout()
    return figure


def _distribution_figure(data: ReportData) -> Figure | None:
    from matplotlib.figure import Figure

    metrics = sorted({k for r in data.runs.values() for o in r.outputs for k in o.scores})[:8]
    if not metrics:
        return None
    columns = min(4, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    figure = Figure(figsize=(2.6 * columns + 0.5, 2.3 * rows), dpi=100)
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(rows, columns, index + 1)
        for color, (name, result) in zip(COLORS, data.runs.items(), strict=False):
            values = [o.scores[metric] for o in result.outputs if metric in o.scores]
            axes.hist(values, bins=10, range=(0, 1), alpha=0.6, color=color, label=name)
        axes.set_title(metric, fontsize=10)
        if index == 0 and len(data.runs) > 1:
            axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _span(values: Sequence[float]) -> tuple[float, float]:
    """A histogram range shared by all runs (so their bars line up), never zero-width."""
    low, high = min(values, default=0.0), max(values, default=0.0)
    pad = max(abs(high) * 0.05, 1e-3) if high - low < 1e-9 else 0.0
    return low - pad, high + pad


def figure_data_uri(figure: Figure) -> str:
    """PNG bytes of a matplotlib Figure as a `data:` URI (Figure renders with Agg, no pyplot)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Helpers


def _img(figure: Figure, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="{figure_data_uri(figure)}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Cells are HTML already (callers escape text with `_e`); the header is escaped here."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(content: str) -> str:
    numeric = content[:1].isdigit() or content[:1] in "-+" and content[1:2].isdigit()
    return f'<td class="num">{content}</td>' if numeric else f"<td>{content}</td>"


def _field(label: str, text: str) -> str:
    return f'<div class="label">{_e(label)}</div><pre>{_e(text)}</pre>'


def _num(value: Any) -> str:
    """Numbers for humans; None (and a non-finite value, which should never appear) as 'n/a'."""
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else "n/a"
    return _e(str(value))


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _read_judge(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LmfError(f"{path}: invalid JSON: {exc.msg}") from exc
    if not isinstance(data, dict) or "summary" not in data or "mode" not in data:
        raise LmfError(f"{path}: not a judge result (write one with `lmf eval judge --out`)")
    return data


def _judge_summary(judge: dict[str, Any] | None) -> dict[str, Any] | None:
    if judge is None:
        return None
    return {k: v for k, v in judge.items() if k != "runs"}


def _finite(value: Any) -> Any:
    """Replace NaN/inf by None so report.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
