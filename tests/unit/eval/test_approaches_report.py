"""The approaches report: every approach, its CI against zero-shot, its prompt and training costs.

The input is an `approaches.json` written by hand in the shape `lmf eval approaches` writes.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.eval.approaches_report import load_approaches, write_approaches_report

WARNING = "outputs are empty: scores of this side measure the prompt, not the model"


def _prompt(shots: int, selection: str) -> dict[str, Any]:
    return {"name": "summarize", "version": 2, "source": "builtin", "shots": shots, "selection": selection,
            "seed": 0, "form": "chat"}  # fmt: skip


def _row(name: str, score: float, diff: float, tokens: float, **extra: Any) -> dict[str, Any]:
    return {
        "approach": name, "n": 40, "metrics": {"rougeL": score, "rouge1": score + 0.1}, "score": score,
        "vs_zero_shot": {"diff": diff, "ci_low": diff - 0.03, "ci_high": diff + 0.03},
        "empty_rate": 0.0, "truncated_rate": 0.025, "prompt": _prompt(0, "fixed"),
        "prompt_tokens_mean": tokens, "shots_mean": 0.0, "latency_p50_s": 0.4, "latency_p95_s": 0.9,
        "training": None, **extra,
    }  # fmt: skip


TRAINING = {"train_seconds": 1234.5, "wall_seconds": 1500.2, "tokens": 2_500_000, "steps": 300,
            "peak_rss_bytes": 3 * 2**30}  # fmt: skip
ROWS = [
    _row("zero-shot", 0.21, 0.0, 180.0, empty_rate=0.1),
    _row("3-shot random", 0.27, 0.06, 820.0, prompt=_prompt(3, "random"), shots_mean=3.0),
    _row("3-shot similar", 0.31, 0.10, 790.0, prompt=_prompt(3, "similar"), shots_mean=2.9),
    _row("fine-tuned run-<7>", 0.38, 0.17, 150.0, training=TRAINING,
         prompt={"name": "training-template:dialogsum", "version": "run", "source": "/runs/7", "shots": 0,
                 "selection": "fixed", "seed": 0, "form": "training"}),
    _row("fine-tuned run-8", 0.35, 0.14, 150.0, training=None),
]  # fmt: skip


def _folder(tmp_path: Path, data: Any) -> Path:
    folder = tmp_path / "approaches"
    folder.mkdir()
    text = data if isinstance(data, str) else json.dumps(data)
    (folder / "approaches.json").write_text(text, encoding="utf-8")
    return folder


def _table(rows: list[dict[str, Any]] = ROWS) -> dict[str, Any]:
    return {"task": "dialogsum", "model": "base-1b", "metric": "rougeL", "n": 40, "confidence": 0.95,
            "approaches": rows}  # fmt: skip


def test_report_has_every_approach_a_figure_and_training_costs(tmp_path: Path) -> None:
    folder = _folder(tmp_path, _table())
    path = write_approaches_report(folder)
    assert path == folder / "report.html"
    html = path.read_text()
    assert "<title>dialogsum: base-1b, prompt, retrieve or fine-tune</title>" in html
    for name in (
        "zero-shot",
        "3-shot random",
        "3-shot similar",
        "fine-tuned run-&lt;7&gt;",
        "fine-tuned run-8",
    ):
        assert f"<td>{name}</td>" in html, name
    assert "<7>" not in html
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 1 and base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert '<span class="pos">+0.1700</span>' in html and "[+0.1400, +0.2000]" in html
    assert "<td>summarize@2</td><td>3-shot similar</td><td>chat</td>" in html
    assert '<td class="num">820.0</td>' in html  # prompt tokens per request
    assert "fine-tuned run-&lt;7&gt;: trained in 1234 s (1500 s wall), 2,500,000 tokens, 300 steps" in html
    assert "peak memory 3.0 GiB" in html
    assert "fine-tuned run-8: training cost n/a" in html
    assert f"zero-shot: 4 of 40 {WARNING}" in html and html.count(WARNING) == 1
    assert "<th>rouge1</th>" in html and '<td class="num">0.4800</td>' in html  # all-metrics table


def test_report_to_another_path_with_a_single_approach_and_missing_optional_columns(tmp_path: Path) -> None:
    row = {"approach": "zero-shot", "score": 0.5, "prompt_tokens_mean": 12,
           "vs_zero_shot": {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0}}  # fmt: skip
    folder = _folder(tmp_path, {"approaches": [row]})
    path = write_approaches_report(folder, tmp_path / "out" / "a.html")
    html = path.read_text()
    assert path == tmp_path / "out" / "a.html" and not (folder / "report.html").exists()
    assert "<td>zero-shot</td>" in html and "data:image/png;base64," in html
    assert "Training cost" not in html and "n/a" in html


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ([1, 2], "the top level is not an object"),
        ({"approaches": []}, "'approaches' is not a non-empty list"),
        ({"approaches": [{"score": 1.0}]}, "row 0 has no 'approach' name"),
        (_table([ROWS[0], {**ROWS[1], "score": "high"}]), r"row 1 \(3-shot random\) lacks numbers for score"),
        (_table([{**ROWS[0], "vs_zero_shot": {"diff": 0.0}}]), "vs_zero_shot"),
    ],
)
def test_malformed_approaches_json_is_an_error_naming_the_file(
    tmp_path: Path, content: Any, message: str
) -> None:
    folder = _folder(tmp_path, content)
    with pytest.raises(LmfError, match=message) as caught:
        write_approaches_report(folder)
    assert str(folder / "approaches.json") in str(caught.value)
    assert not (folder / "report.html").exists()


def test_missing_approaches_json_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(LmfError, match=r"approaches\.json: not found"):
        load_approaches(tmp_path)
