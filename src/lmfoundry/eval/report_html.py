"""HTML building blocks shared by the evaluation reports (`report.py`, `approaches_report.py`).

Every report is one self-contained file: the same inline CSS, figures as base64 PNG `data:` URIs
(matplotlib's Agg renderer through `Figure`, no pyplot state), tables whose cells are HTML already,
and one escaping function that every string read from a file goes through.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLORS = ("#4c72b0", "#dd8452")
EMPTY_WARNING_RATE = 0.05
"""Above this share of empty outputs a side's scores say more about its prompt than its model."""

NUMERIC = re.compile(r"[+-]?\d[\d,./]*(?:$|\s|%)")

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
.warn{color:#c62828;font-weight:600}
"""


def figure_data_uri(figure: Figure) -> str:
    """PNG bytes of a matplotlib Figure as a `data:` URI (Figure renders with Agg, no pyplot)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def prompt_label(prompt: dict[str, Any]) -> str:
    """`name@version` of a recorded prompt; "n/a" for results written before prompts were recorded."""
    name = prompt.get("name")
    if not name:
        return "n/a"
    return f"{name}@{prompt['version']}" if prompt.get("version") is not None else str(name)


def shots_label(prompt: dict[str, Any]) -> str:
    """The shots and selection ("zero-shot", "3-shot similar"): what tells candidates of one
    prompt template apart."""
    shots = prompt.get("shots")
    if shots is None:
        return "n/a"
    return "zero-shot" if not shots else f"{shots}-shot {prompt.get('selection') or ''}".strip()


def empty_warning(empty: int, total: int, who: str) -> str:
    """The line shown where many outputs are empty: their scores measure the prompt, not the model."""
    return (
        f'<p class="warn">{esc(who)}: {empty} of {total} outputs are empty: '
        "scores of this side measure the prompt, not the model.</p>"
    )


def count_of(count: int, total: int) -> str:
    """A count beside its rate ("3 of 40 (7.5%)"), so a small sample is not mistaken for a big one."""
    return f"{count} of {total} ({count / max(total, 1):.1%})"


def img_tag(figure: Figure, alt: str) -> str:
    """An inline PNG `<img>`: the report stays one file that opens anywhere."""
    return f'<img alt="{esc(alt)}" src="{figure_data_uri(figure)}">'


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Cells are HTML already (callers escape text with `esc`); the header is escaped here."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def cell(content: str) -> str:
    """A `<td>`, right-aligned when it holds a number ("0.25", "-3", "4 of 20", "3/1/0") so columns
    of numbers line up; a name that starts with a digit ("3-shot similar") stays left-aligned."""
    numeric = NUMERIC.match(content) is not None
    return f'<td class="num">{content}</td>' if numeric else f"<td>{content}</td>"


def field(label: str, text: str) -> str:
    """A labelled block of preformatted text (an input, a reference, an output), escaped."""
    return f'<div class="label">{esc(label)}</div><pre>{esc(text)}</pre>'


def fmt_num(value: Any) -> str:
    """Numbers for humans; None (and a non-finite value, which should never appear) as 'n/a'."""
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else "n/a"
    return esc(str(value))


def esc(text: str) -> str:
    """Text as HTML: every string from a file (inputs, outputs, names) goes through here."""
    return html.escape(str(text), quote=True)
