"""A self-contained HTML report of an evaluation run or a champion-vs-challenger comparison.

One file that opens anywhere (a CI artifact, an email attachment): CSS inline, figures inline as
base64 PNG (matplotlib's Agg renderer through `Figure`, no pyplot state, no display needed), no
scripts or network. `report.json` beside it holds the same numbers for machines.

Input is a folder written by `lmf eval run` (results.json + outputs.jsonl) or `lmf eval compare`
(comparison.json + champion/ + challenger/); a `judge.json` from `lmf eval judge --out` in the
same folder adds a judge section.

Before any score the report says what was asked (each side's prompt, and for a comparison how
the baseline prompt was chosen) and what came back (empty, cut-at-start and truncated outputs),
because a score over outputs that say nothing measures the prompt, not the model. Files written
before these were recorded show "n/a".
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import LmfError
from lmfoundry.eval.compare import load_comparison
from lmfoundry.eval.evaluate import EvalResult, ExampleOutput
from lmfoundry.eval.report_html import (
    COLORS,
    CSS,
    EMPTY_WARNING_RATE,
    count_of,
    empty_warning,
    esc,
    field,
    fmt_num,
    html_table,
    img_tag,
    prompt_label,
    shots_label,
)
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
CHECKS = (("empty", "empty"), ("cut_at_start", "cut at start"), ("truncated", "truncated"))
CHECK_KEYS = ("empty_rate", "cut_at_start_rate", "truncated_rate", "counts")


@dataclass
class ReportData:
    """What a report shows: one run, or two runs plus their comparison; optionally judge results."""

    kind: str
    """"run" or "compare"."""
    runs: dict[str, EvalResult]
    """{"run": result} or {"champion": ..., "challenger": ...}."""
    comparison: dict[str, Any] | None = None
    judge: dict[str, Any] | None = None
    checked: set[str] | None = None
    """Runs whose files recorded output checks (None: all of them); older files show n/a."""

    def output_checks(self, name: str) -> dict[str, Any] | None:
        """A run's empty/cut-at-start/truncated counts and rates; None when its files predate them
        (their outputs carry no flags, so counting them would claim zero, not "unknown")."""
        if self.checked is not None and name not in self.checked:
            return None
        return self.runs[name].output_checks()

    def prompt_search(self) -> dict[str, Any] | None:
        """`comparison.json`'s record of how each side's baseline prompt was chosen, if any."""
        search = (self.comparison or {}).get("prompt_search")
        return search if isinstance(search, dict) else None

    def to_json(self) -> dict[str, Any]:
        """The report's numbers (no per-example text) for `report.json`."""
        return _finite(
            {
                "kind": self.kind,
                "runs": {name: self._run_summary(name) for name in self.runs},
                "prompts": {name: r.prompt or None for name, r in self.runs.items()},
                "output_checks": {name: self.output_checks(name) for name in self.runs},
                "prompt_search": self.prompt_search(),
                "per_example_scores": {
                    name: {o.id: o.scores for o in r.outputs} for name, r in self.runs.items()
                },
                "comparison": self.comparison,
                "judge": _judge_summary(self.judge),
            }
        )

    def _run_summary(self, name: str) -> dict[str, Any]:
        summary = self.runs[name].summary()
        if self.output_checks(name) is None:
            summary.update(dict.fromkeys(CHECK_KEYS))
        return summary


def load_report_data(path: str | Path) -> ReportData:
    """Read a run folder or a compare folder (see the module docstring)."""

    folder = Path(path)
    if not folder.is_dir():
        raise LmfError(f"report input must be a folder from `lmf eval run` or `lmf eval compare`: {folder}")
    judge = _read_judge(folder / "judge.json")
    if (folder / "comparison.json").is_file():
        runs = {name: EvalResult.load(folder / name) for name in ("champion", "challenger")}
        checked = {name for name in runs if _records_checks(folder / name)}
        return ReportData("compare", runs, load_comparison(folder / "comparison.json"), judge, checked)
    if (folder / "results.json").is_file():
        checked = {"run"} if _records_checks(folder) else set()
        return ReportData("run", {"run": EvalResult.load(folder)}, None, judge, checked)
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
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">{len(first.outputs)} examples &middot; generated {esc(time.strftime("%Y-%m-%d %H:%M:%S"))}</p>',
        _asked_section(data),
        _checks_section(data),
        _search_section(data.prompt_search()),
        _baselines_section((data.comparison or {}).get("baselines")),
        _scores_section(data),
        _latency_section(data),
        _judge_section(data.judge),
        _distribution_section(data),
        _examples_section(data),
    ]
    body = "\n".join(s for s in sections if s)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


# ---------------------------------------------------------------------------------------------
# Sections


def _asked_section(data: ReportData) -> str:
    """Each side's prompt: a score is a score of a model *and* the prompt it was asked with."""
    recorded = (data.comparison or {}).get("prompts") or {}
    rows = []
    for name, result in data.runs.items():
        prompt = result.prompt or recorded.get(name) or {}
        details = (fmt_num(prompt.get(key)) for key in ("source", "form", "shots", "selection"))
        rows.append([esc(name), esc(prompt_label(prompt)), *details])
    return "<h2>What was asked</h2>" + html_table(
        ["", "prompt", "source", "form", "shots", "selection"], rows
    )


def _checks_section(data: ReportData) -> str:
    """Empty, cut-at-start and truncated outputs per side, and a warning where emptiness is common."""
    rows, warnings = [], []
    for name, result in data.runs.items():
        checks, total = data.output_checks(name), len(result.outputs)
        if checks is None:
            rows.append([esc(name), "n/a", "n/a", "n/a"])
            continue
        rows.append([esc(name), *(count_of(checks["counts"][key], total) for key, _ in CHECKS)])
        if checks["empty_rate"] > EMPTY_WARNING_RATE:
            warnings.append(empty_warning(checks["counts"]["empty"], total, name))
    note = (
        '<p class="note">Empty: nothing left once stop strings and whitespace are removed; cut at start: '
        "a stop string came first (the model answered in a format the prompt did not expect); truncated: "
        "the length limit ended the answer; n/a: the result was written before these checks existed.</p>"
    )
    header = ["", *(label for _, label in CHECKS)]
    return "<h2>What came back</h2>" + "".join(warnings) + html_table(header, rows) + note


def _search_section(search: dict[str, Any] | None) -> str:
    """How each side's baseline prompt was chosen, so a beaten baseline can be judged a fair one."""
    if not search:
        return ""
    parts = []
    for side, found in search.items():
        if not isinstance(found, dict):
            parts.append(f'<p class="note">{esc(side)}: its prompt was not searched (n/a).</p>')
        elif not found.get("chosen_on"):
            parts.append(f'<p class="note">{esc(side)}: {esc(found.get("note") or "no search")}.</p>')
        else:
            parts.append(_search_table(side, found))
    return "<h2>How the baseline prompt was chosen</h2>" + "".join(parts)


def _baselines_section(rows: list[dict[str, Any]] | None) -> str:
    """Every base prompt on the test examples against the challenger: zero-shot, few-shot, side by side."""
    if not rows:
        return ""
    body = [
        [esc(row["prompt"]), fmt_num(row["score"]), fmt_num(row["empty_rate"]),
         fmt_num(row["challenger_minus_this"]["diff"]),
         f"[{row['challenger_minus_this']['ci_low']:+.4f}, {row['challenger_minus_this']['ci_high']:+.4f}]"]
        for row in rows
    ]  # fmt: skip
    header = ["base model prompt", "score (test)", "empty rate", "challenger minus this", "CI"]
    return "<h2>The base model's prompts on the test examples</h2>" + html_table(header, body)


def _search_table(side: str, found: dict[str, Any]) -> str:
    rows = []
    for candidate in found.get("candidates") or []:
        prompt = candidate.get("prompt") or {}
        won = prompt == found.get("winner")
        rows.append(
            [("<b>&#9733; " if won else "") + esc(shots_label(prompt)) + ("</b>" if won else ""),
             esc(prompt_label(prompt)), fmt_num(candidate.get("score")), fmt_num(candidate.get("empty_rate")),
             fmt_num(candidate.get("truncated_rate")), "chosen" if won else ""]
        )  # fmt: skip
    margin = found.get("margin")
    by = f", ahead by {margin:+.4f}" if isinstance(margin, int | float) else ""
    note = (
        f'<p class="note">{esc(side)}: chosen on {esc(found["chosen_on"])} by '
        f"{esc(found.get('metric', '?'))}{by} (&#9733; marks the winner).</p>"
    )
    header = ["candidate", "prompt", "score", "empty rate", "truncated rate", ""]
    return note + html_table(header, rows)


def _scores_section(data: ReportData) -> str:
    if data.kind == "run":
        rows = [[esc(k), fmt_num(v)] for k, v in data.runs["run"].aggregates.items()]
        return "<h2>Scores</h2>" + html_table(["metric", "mean"], rows)
    assert data.comparison is not None
    confidence = data.comparison.get("confidence", 0.95)
    rows = []
    for name, m in data.comparison["metrics"].items():
        css = "pos" if m["ci_low"] > 0 else "neg" if m["ci_high"] < 0 else ""
        rows.append(
            [esc(name), fmt_num(m["champion"]), fmt_num(m["challenger"]),
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
        + html_table(header, rows)
        + note
        + img_tag(_ci_figure(data.comparison), "CI bars")
    )


def _latency_section(data: ReportData) -> str:
    names = list(data.runs)
    many = len(names) > 1
    rows = [
        [f"{label} &middot; {esc(name)}" if many else label,
         *(fmt_num(data.runs[name].latency[key][stat]) for stat in ("mean", "p50", "p95", "p99"))]
        for key, label in LATENCY_ROWS
        for name in names
    ]  # fmt: skip
    totals = [
        [label, *(fmt_num(data.runs[n].latency.get(key)) for n in names)]
        for key, label in (("throughput_tokens_per_s", "throughput (tokens/s)"),
                           ("price_per_hour", "price per hour (USD)"),
                           ("cost_per_1m_tokens", "cost per 1M tokens (USD)"))
    ]  # fmt: skip
    figure = img_tag(_latency_figure(data), "latency histograms")
    return (
        "<h2>Latency and cost</h2>"
        + html_table(["", "mean", "p50", "p95", "p99"], rows)
        + html_table(["", *names], totals)
        + figure
    )


def _judge_section(judge: dict[str, Any] | None) -> str:
    if not judge:
        return ""
    summary = judge["summary"]
    rows = [
        [esc(k), fmt_num(v) if not isinstance(v, dict) else esc(json.dumps(v))] for k, v in summary.items()
    ]
    variance = judge.get("variance", {})
    rows += [
        [f"{judge['headline']} across {judge['repeats']} repeats: {k}", fmt_num(v)]
        for k, v in variance.items()
    ]
    who = (
        f" ({esc(judge.get('model_a', 'a'))} = a, {esc(judge.get('model_b', 'b'))} = b)"
        if judge["mode"] == "pairwise"
        else ""
    )
    note = (
        f'<p class="note">Judge: {esc(judge.get("judge", "?"))}{who}. Unparseable judgments '
        f"({judge['n_unparseable']}) are counted and excluded from the means.</p>"
    )
    return f"<h2>Judge ({esc(judge['mode'])})</h2>" + note + html_table(["", "value"], rows)


def _distribution_section(data: ReportData) -> str:
    figure = _distribution_figure(data)
    return "<h2>Score distributions</h2>" + img_tag(figure, "score distributions") if figure else ""


def _examples_section(data: ReportData) -> str:
    names = list(data.runs)
    by_name = {n: {o.id: o for o in data.runs[n].outputs} for n in names}
    first = data.runs[names[0]].outputs
    blocks = []
    for output in first[:MAX_EXAMPLES]:
        parts = [field("input", output.input), field("reference", output.reference)]
        headline = []
        for name in names:
            o = by_name[name].get(output.id)
            if o is None:
                continue
            label = "output" if len(names) == 1 else f"{name} output"
            marks = output_marks(o)
            if marks:
                parts.append(f'<p class="warn">{esc(label)}: {esc(", ".join(marks))}</p>')
            parts.append(field(label, o.output))
            parts.append(html_table(["score", "value"], [[esc(k), fmt_num(v)] for k, v in o.scores.items()]))
            parts.append(f'<p class="note">{esc(name)}: {o.latency.get("total_s", 0):.3f}s, '
                         f'{int(o.latency.get("completion_tokens", 0))} tokens, finish: {esc(o.finish_reason)}, '
                         f'{o.shots} shots</p>')  # fmt: skip
            scores = " ".join(f"{k}={v:.3f}" for k, v in list(o.scores.items())[:3])
            scores += f" [{', '.join(marks)}]" if marks else ""
            headline.append(f"{name}: {scores}" if len(names) > 1 else scores)
        summary = f"<summary><b>{esc(output.id)}</b> &mdash; {esc(' | '.join(headline))}</summary>"
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


# ---------------------------------------------------------------------------------------------
# Helpers


def output_marks(output: ExampleOutput) -> list[str]:
    """The checks an output failed, for the drill-down (an empty output is not a wrong answer)."""
    return [label for key, label in CHECKS if getattr(output, key)]


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


def _records_checks(folder: Path) -> bool:
    """Whether the run's results.json has output checks (files written before them do not)."""
    try:
        return "empty_rate" in json.loads((folder / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


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
