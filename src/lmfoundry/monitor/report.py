"""The drift report: one self-contained HTML file (inline PNG plots) and its JSON summary.

Built from the evaluation reports' blocks (`eval.report_html`): the same CSS, escaping, tables
and figures-as-data-URIs, so a monitoring report looks and opens like an evaluation report.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.eval.report_html import COLORS, CSS, esc, fmt_num, html_table, img_tag
from lmfoundry.fsutil import atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lmfoundry.monitor.drift import MonitorResult


def write_report(result: MonitorResult, out_dir: str | Path) -> dict[str, Path]:
    """`report.html` and `summary.json` in `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "json": out / "summary.json"}
    atomic_write_text(paths["json"], json.dumps(result.summary(), indent=2, default=str) + "\n")
    atomic_write_text(paths["html"], render_html(result))
    return paths


def render_html(result: MonitorResult) -> str:
    verdict = '<span class="warn">DRIFT</span>' if result.drifted else "no drift"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>lmf monitor</title><style>{CSS}</style></head><body>",
        f"<h1>Traffic drift: {verdict}</h1>",
        f'<p class="meta">{_window_line("reference", result.reference.describe())}<br>'
        f"{_window_line('current', result.current.describe())}<br>"
        f"Drift is flagged where p &lt; {result.thresholds.alpha:g} and the effect passes its threshold.</p>",
        "<h2>Checks</h2>",
        _checks_table(result),
        "<h2>Distributions</h2>",
    ]
    parts += [img_tag(_histogram(name, *values), name) for name, values in result.series.items()]
    if result.projection is not None:
        parts.append(img_tag(_scatter(*result.projection), "prompt embeddings (PCA)"))
    parts.append(img_tag(_languages(result.languages), "language mix"))
    if result.novel_examples:
        parts.append("<h2>Current requests farthest from every reference cluster</h2><ul>")
        parts += [f"<li>{esc(text[:300])}</li>" for text in result.novel_examples]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _window_line(label: str, window: dict[str, Any]) -> str:
    return (
        f"{label}: {esc(window['source'])}, {window['n']} exchanges, "
        f"{_time(window['first'])} to {_time(window['last'])}"
    )


def _time(value: float | None) -> str:
    return "n/a" if value is None else datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _checks_table(result: MonitorResult) -> str:
    rows = []
    for c in result.checks:
        status = (
            '<span class="warn">DRIFT</span>' if c.flagged else ("skipped" if c.rule == "skipped" else "ok")
        )
        p = "n/a" if c.p_value is None else f"{c.p_value:.4f}"
        numbers = [fmt_num(c.reference), fmt_num(c.current), p, fmt_num(c.effect)]
        rows.append([esc(c.name), esc(c.group), *numbers, esc(c.rule), status, esc(c.note)])
    header = ["check", "group", "reference", "current", "p-value", "effect", "rule", "result", "note"]
    return html_table(header, rows)


def _figure(width: float = 7.0, height: float = 3.0) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.add_subplot()


def _histogram(name: str, reference: list[float], current: list[float]) -> Figure:
    import numpy as np

    figure, axes = _figure()
    bins = np.histogram_bin_edges(np.asarray([*reference, *current], dtype=float), bins=20)
    for values, label, color in ((reference, "reference", COLORS[0]), (current, "current", COLORS[1])):
        axes.hist(values, bins=bins, alpha=0.55, color=color, label=label, density=True)
    axes.set_xlabel(name)
    axes.set_ylabel("density")
    axes.legend()
    return figure


def _scatter(reference: Any, current: Any) -> Figure:
    figure, axes = _figure(5.5, 4.0)
    axes.scatter(reference[:, 0], reference[:, 1], s=12, alpha=0.6, color=COLORS[0], label="reference")
    axes.scatter(current[:, 0], current[:, 1], s=12, alpha=0.6, color=COLORS[1], label="current")
    axes.set_title("prompt embeddings, first two principal components")
    axes.legend()
    return figure


def _languages(languages: dict[str, dict[str, int]]) -> Figure:
    import numpy as np

    figure, axes = _figure()
    names = sorted({name for counts in languages.values() for name in counts})
    x = np.arange(len(names))
    for offset, (side, color) in enumerate(zip(("reference", "current"), COLORS, strict=True)):
        counts = languages.get(side, {})
        total = max(sum(counts.values()), 1)
        axes.bar(
            x + (offset - 0.5) * 0.4, [counts.get(n, 0) / total for n in names], 0.4, color=color, label=side
        )
    axes.set_xticks(x, names)
    axes.set_ylabel("share of prompts")
    axes.legend()
    return figure
