"""The approaches report: prompt, retrieve or fine-tune, side by side, with what each one costs.

`lmf eval approaches` writes `approaches.json` (see `approaches.py`); this renders it as one
self-contained HTML file in the style of the evaluation report (its CSS, inline PNG figures, no
scripts or network), so "is the fine-tune worth it?" travels as a single artifact. A score alone
does not answer that: few-shot prompts pay for their demonstrations on every request (prompt
tokens, latency) while a fine-tune pays once, up front (training time and tokens), so the report
puts each approach's score and its paired CI against zero-shot next to both costs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import LmfError
from lmfoundry.eval.approaches import APPROACHES_FILE
from lmfoundry.eval.report_html import (
    COLORS,
    CSS,
    EMPTY_WARNING_RATE,
    empty_warning,
    esc,
    fmt_num,
    html_table,
    img_tag,
    prompt_label,
    shots_label,
)
from lmfoundry.fsutil import atomic_write_text, read_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_FILE = "report.html"
NUMBERS = ("score", "prompt_tokens_mean")
"""Row fields the table and figure cannot do without (the rest show "n/a" when missing)."""
CI_KEYS = ("diff", "ci_low", "ci_high")


def write_approaches_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Render `folder/approaches.json` to `out` (default `folder/report.html`), atomically."""
    data = load_approaches(folder)
    path = Path(out) if out else Path(folder) / REPORT_FILE
    atomic_write_text(path, render_approaches_html(data))
    return path


def load_approaches(folder: str | Path) -> dict[str, Any]:
    """The approaches table of `folder`; an error naming the file when it is missing or malformed,
    rather than a KeyError halfway through rendering."""
    path = Path(folder) / APPROACHES_FILE
    data = read_json(path, f"{path}: not found (write it with `lmf eval approaches`)")
    problem = _problem(data)
    if problem:
        raise LmfError(f"{path}: not an approaches table ({problem}); write one with `lmf eval approaches`")
    return data


def render_approaches_html(data: dict[str, Any]) -> str:
    """The whole approaches report as one HTML string (`data` as `load_approaches` returns it)."""
    rows = data["approaches"]
    metric = str(data.get("metric", "score"))
    title = f"{data.get('task', '?')}: {data.get('model', '?')}, prompt, retrieve or fine-tune"
    meta = (
        f"{fmt_num(data.get('n'))} test examples &middot; metric {esc(metric)} &middot; "
        f"generated {esc(time.strftime('%Y-%m-%d %H:%M:%S'))}"
    )
    sections = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">{meta}</p>',
        "".join(_empty_warnings(rows)),
        "<h2>Approaches</h2>" + _approaches_table(rows, data.get("confidence", 0.95)),
        _note(metric),
        img_tag(_figure(rows, metric, data.get("confidence", 0.95)), "scores and prompt cost"),
        _training_section(rows),
        _metrics_section(rows),
    ]
    body = "\n".join(s for s in sections if s)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


# ---------------------------------------------------------------------------------------------
# Sections


def _approaches_table(rows: list[dict[str, Any]], confidence: float) -> str:
    table = []
    for row in rows:
        versus, prompt = row["vs_zero_shot"], row.get("prompt") or {}
        css = "pos" if versus["ci_low"] > 0 else "neg" if versus["ci_high"] < 0 else ""
        table.append(
            [esc(row["approach"]), fmt_num(row.get("n")), fmt_num(row["score"]),
             f'<span class="{css}">{versus["diff"]:+.4f}</span>',
             f"[{versus['ci_low']:+.4f}, {versus['ci_high']:+.4f}]",
             fmt_num(row.get("empty_rate")), fmt_num(row.get("truncated_rate")),
             esc(prompt_label(prompt)), esc(shots_label(prompt)), fmt_num(prompt.get("form")),
             _fixed(row.get("shots_mean"), 1), _fixed(row["prompt_tokens_mean"], 1),
             fmt_num(row.get("latency_p50_s")), fmt_num(row.get("latency_p95_s")),
             _training_cell(row.get("training"))]
        )  # fmt: skip
    header = ["approach", "n", "score", "vs zero-shot", f"{confidence:.0%} CI", "empty rate",
              "truncated rate", "prompt", "shots", "form", "shots (mean)", "prompt tokens (mean)",
              "latency p50 (s)", "latency p95 (s)", "training (s)"]  # fmt: skip
    return html_table(header, table)


def _note(metric: str) -> str:
    return (
        f'<p class="note">Score: mean {esc(metric)} over the same test examples for every approach; '
        "vs zero-shot: paired bootstrap of the per-example difference (green: CI above 0, red: below). "
        "Prompt tokens are paid on every request; training is paid once.</p>"
    )


def _metrics_section(rows: list[dict[str, Any]]) -> str:
    """Every aggregate each approach recorded: the headline metric is one of several."""
    names = sorted({key for row in rows for key in (row.get("metrics") or {})})
    if not names:
        return ""
    table = [
        [esc(row["approach"]), *(fmt_num((row.get("metrics") or {}).get(n)) for n in names)] for row in rows
    ]
    return "<h2>All metrics</h2>" + html_table(["approach", *names], table)


def _training_section(rows: list[dict[str, Any]]) -> str:
    """A line per fine-tuned approach with what its training cost."""
    lines = [_training_line(row) for row in rows if _fine_tuned(row)]
    if not lines:
        return ""
    return "<h2>Training cost</h2>" + "".join(f"<p>{line}</p>" for line in lines)


def _training_line(row: dict[str, Any]) -> str:
    name, cost = esc(row["approach"]), row.get("training")
    if not isinstance(cost, dict):
        return f"{name}: training cost n/a (its run has no summary.json)"
    rss = cost.get("peak_rss_bytes")
    memory = f"{rss / 2**30:.1f} GiB" if isinstance(rss, int | float) else "n/a"
    tokens = cost.get("tokens")
    return (
        f"{name}: trained in {_fixed(cost.get('train_seconds'), 0)} s "
        f"({_fixed(cost.get('wall_seconds'), 0)} s wall), "
        f"{f'{tokens:,}' if isinstance(tokens, int) else fmt_num(tokens)} tokens, "
        f"{fmt_num(cost.get('steps'))} steps, peak memory {memory}"
    )


def _empty_warnings(rows: list[dict[str, Any]]) -> list[str]:
    """The evaluation report's warning, for each approach whose outputs are often empty."""
    warnings = []
    for row in rows:
        rate, n = row.get("empty_rate"), row.get("n")
        if isinstance(rate, int | float) and isinstance(n, int) and rate > EMPTY_WARNING_RATE:
            warnings.append(empty_warning(round(rate * n), n, str(row["approach"])))
    return warnings


# ---------------------------------------------------------------------------------------------
# Figure


def _figure(rows: list[dict[str, Any]], metric: str, confidence: float) -> Figure:
    """(a) each score with the CI of its difference from zero-shot; (b) score against prompt tokens."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 1.2 + max(2.8, 0.5 * len(rows))), dpi=100)
    scores_axes, cost_axes = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    zero = next((float(r["score"]) for r in rows if r["approach"] == "zero-shot"), None)
    for index, row in enumerate(rows):
        score, versus = float(row["score"]), row["vs_zero_shot"]
        below, above = (
            max(versus["diff"] - versus["ci_low"], 0.0),
            max(versus["ci_high"] - versus["diff"], 0.0),
        )
        color = _color(row)
        scores_axes.errorbar(score, index, xerr=[[below], [above]], fmt="o", color=color, capsize=4)
        tokens = float(row["prompt_tokens_mean"])
        cost_axes.scatter(tokens, score, color=color, s=40, zorder=3)
        cost_axes.annotate(str(row["approach"]), (tokens, score), textcoords="offset points",
                           xytext=(5, 5), fontsize=8)  # fmt: skip
    if zero is not None:
        scores_axes.axvline(zero, color="#888", linewidth=1, linestyle="--")
    scores_axes.set_yticks(range(len(rows)), [str(r["approach"]) for r in rows])
    scores_axes.invert_yaxis()
    scores_axes.set_xlabel(f"{metric} ({confidence:.0%} CI of the difference from zero-shot)")
    scores_axes.set_title("(a) score", fontsize=10)
    cost_axes.set_xlabel("prompt tokens per request (mean)")
    cost_axes.set_ylabel(metric)
    cost_axes.set_title("(b) score against prompt cost", fontsize=10)
    cost_axes.margins(0.2)
    cost_axes.set_xlim(left=0)
    figure.tight_layout()
    return figure


def _color(row: dict[str, Any]) -> str:
    return COLORS[1] if _fine_tuned(row) else COLORS[0]


# ---------------------------------------------------------------------------------------------
# Helpers


def _fine_tuned(row: dict[str, Any]) -> bool:
    return row.get("training") is not None or str(row.get("approach", "")).startswith("fine-tuned")


def _training_cell(cost: Any) -> str:
    return _fixed(cost.get("train_seconds"), 0) if isinstance(cost, dict) else ""


def _fixed(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if _is_number(value) else "n/a"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _problem(data: Any) -> str | None:
    """What is wrong with a parsed approaches.json, or None when the report can be drawn from it."""
    if not isinstance(data, dict):
        return "the top level is not an object"
    rows = data.get("approaches")
    if not isinstance(rows, list) or not rows:
        return "'approaches' is not a non-empty list"
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("approach"), str):
            return f"row {index} has no 'approach' name"
        missing = [key for key in NUMBERS if not _is_number(row.get(key))]
        versus = row.get("vs_zero_shot")
        if not isinstance(versus, dict) or not all(_is_number(versus.get(k)) for k in CI_KEYS):
            missing.append("vs_zero_shot {diff, ci_low, ci_high}")
        if missing:
            return f"row {index} ({row['approach']}) lacks numbers for {', '.join(missing)}"
    return None
