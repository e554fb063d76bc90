"""The report says what was asked and what came back: prompts, output checks, the prompt search.

Run and compare folders are written by hand as JSON files, in today's format and in the format
written before prompts and output checks were recorded, which must still render (as "n/a").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.eval.latency import Timing, latency_summary
from lmfoundry.eval.report import load_report_data, render_html, write_report

WARNING = "outputs are empty: scores of this side measure the prompt, not the model"
PROMPT = {"name": "qa-<short>", "version": 3, "source": "builtin", "shots": 0, "selection": "fixed",
          "seed": 0, "form": "chat"}  # fmt: skip
FEW_SHOT = {**PROMPT, "shots": 3, "selection": "similar"}
LATENCY = latency_summary([Timing(0.05, 0.2, 4), Timing(0.07, 0.3, 6)])


def _output(index: int, *, empty: bool = False, cut: bool = False, truncated: bool = False) -> dict[str, Any]:
    text = "" if empty else f"answer {index}"
    return {
        "id": f"q{index}", "input": f"question {index}", "output": text, "reference": f"answer {index}",
        "scores": {"exact_match": 0.0 if empty else 1.0},
        "latency": {"ttft_s": 0.05, "total_s": 0.2, "tpot_s": 0.05, "tokens_per_s": 20.0,
                    "prompt_tokens": 30, "completion_tokens": 4},
        "finish_reason": "length" if truncated else "stop",
        "empty": empty, "cut_at_start": cut, "truncated": truncated, "shots": 0,
    }  # fmt: skip


def _outputs(n: int = 20, empty: int = 0, cut: int = 0, truncated: int = 0) -> list[dict[str, Any]]:
    """`n` outputs: the first `empty` are empty (the first `cut` of them cut at start), the last
    `truncated` were cut by the length limit."""
    return [_output(i, empty=i < empty, cut=i < cut, truncated=i >= n - truncated) for i in range(n)]


def _write_run(
    folder: Path, outputs: list[dict[str, Any]], *, model: str = "m", prompt: dict | None = None
) -> Path:
    """results.json + outputs.jsonl as `lmf eval run` writes them today."""
    folder.mkdir(parents=True)
    n = len(outputs)
    counts = {key: sum(o[key] for o in outputs) for key in ("empty", "cut_at_start", "truncated")}
    mean = sum(o["scores"]["exact_match"] for o in outputs) / n
    results = {"task": "qa", "model": model, "n": n, "metrics": {"exact_match": mean},
               **{f"{k}_rate": v / n for k, v in counts.items()}, "counts": counts,
               "prompt": PROMPT if prompt is None else prompt, "metric_names": ["exact_match"],
               "latency": LATENCY, "params": {}}  # fmt: skip
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (folder / "outputs.jsonl").write_text("".join(json.dumps(o) + "\n" for o in outputs), encoding="utf-8")
    return folder


def _write_old_run(folder: Path, outputs: list[dict[str, Any]], model: str = "m") -> Path:
    """The same, as written before prompts and output checks were recorded."""
    old_keys = ("id", "input", "output", "reference", "scores", "latency")
    folder.mkdir(parents=True)
    mean = sum(o["scores"]["exact_match"] for o in outputs) / len(outputs)
    results = {"task": "qa", "model": model, "n": len(outputs), "metrics": ["exact_match"],
               "aggregates": {"exact_match": mean}, "latency": LATENCY, "params": {}}  # fmt: skip
    lines = "".join(json.dumps({k: o[k] for k in old_keys}) + "\n" for o in outputs)
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (folder / "outputs.jsonl").write_text(lines, encoding="utf-8")
    return folder


def _comparison(**extra: Any) -> dict[str, Any]:
    metric = {"champion": 0.8, "challenger": 0.95, "diff": 0.15, "ci_low": 0.05, "ci_high": 0.25,
              "wins": 3, "ties": 17, "losses": 0}  # fmt: skip
    return {"task": "qa", "champion_model": "base", "challenger_model": "tuned", "n": 20, "confidence": 0.95,
            "n_boot": 200, "seed": 0, "metrics": {"exact_match": metric}, **extra}  # fmt: skip


def _write_compare(folder: Path, comparison: dict[str, Any], champion: list, challenger: list) -> Path:
    _write_run(folder / "champion", champion, model="base", prompt=FEW_SHOT)
    _write_run(folder / "challenger", challenger, model="tuned")
    (folder / "comparison.json").write_text(json.dumps(comparison), encoding="utf-8")
    return folder


SEARCH = {
    "chosen_on": "validation (8 examples)",
    "metric": "exact_match",
    "winner": FEW_SHOT,
    "margin": 0.125,
    "candidates": [
        {"prompt": PROMPT, "score": 0.5, "empty_rate": 0.375, "truncated_rate": 0.0},
        {"prompt": FEW_SHOT, "score": 0.625, "empty_rate": 0.0, "truncated_rate": 0.125},
    ],
}


def test_run_report_shows_prompt_and_checks_without_warning_at_the_threshold(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", _outputs(20, empty=1, cut=1, truncated=2))
    html_path, json_path = write_report(run)
    html = html_path.read_text()
    assert "<h2>What was asked</h2>" in html and "qa-&lt;short&gt;@3" in html and "<short>" not in html
    assert "<td>builtin</td><td>chat</td>" in html
    assert "1 of 20 (5.0%)" in html and "2 of 20 (10.0%)" in html  # empty, cut at start / truncated
    assert WARNING not in html  # 1 in 20 is 0.05: not above the threshold
    assert html.count("[empty, cut at start]") == 1 and html.count("[truncated]") == 2
    assert '<p class="warn">output: empty, cut at start</p>' in html
    assert "finish: length" in html
    data = json.loads(json_path.read_text())
    assert data["prompts"]["run"]["name"] == "qa-<short>"
    assert data["output_checks"]["run"]["counts"] == {"empty": 1, "cut_at_start": 1, "truncated": 2}
    assert data["runs"]["run"]["empty_rate"] == pytest.approx(0.05)
    assert data["prompt_search"] is None


def test_run_report_warns_when_many_outputs_are_empty(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", _outputs(20, empty=3))
    html = render_html(load_report_data(run))
    assert f"run: 3 of 20 {WARNING}" in html
    assert "3 of 20 (15.0%)" in html


def test_compare_report_warns_for_one_side_and_shows_the_prompt_search(tmp_path: Path) -> None:
    outputs = {"empty_rate": {"champion": 0.2, "challenger": 0.0, "diff": -0.2}}
    comparison = _comparison(outputs=outputs, prompts={"champion": FEW_SHOT, "challenger": PROMPT},
                             prompt_search={"champion": SEARCH, "challenger": None})  # fmt: skip
    folder = _write_compare(tmp_path / "cmp", comparison, _outputs(20, empty=4), _outputs(20))
    html_path, json_path = write_report(folder)
    html = html_path.read_text()
    assert f"champion: 4 of 20 {WARNING}" in html and html.count(WARNING) == 1
    assert "4 of 20 (20.0%)" in html and "0 of 20 (0.0%)" in html
    assert "<td>champion</td><td>qa-&lt;short&gt;@3</td><td>builtin</td><td>chat</td>" in html
    assert "<h2>How the baseline prompt was chosen</h2>" in html
    assert "chosen on validation (8 examples) by exact_match, ahead by +0.1250" in html
    assert "<b>&#9733; 3-shot similar</b>" in html and "<td>zero-shot</td>" in html
    assert '<td class="num">0.3750</td>' in html  # the zero-shot candidate's empty rate
    assert "challenger: its prompt was not searched (n/a)" in html
    assert html.count("[empty, cut at start]") == 0 and html.count("champion: exact_match=0.000 [empty]") == 4
    data = json.loads(json_path.read_text())
    assert data["prompt_search"]["champion"]["winner"] == FEW_SHOT
    assert data["output_checks"]["champion"]["counts"]["empty"] == 4
    assert data["prompts"]["challenger"]["shots"] == 0


def test_prompt_search_without_validation_split_shows_its_note(tmp_path: Path) -> None:
    search = {
        "chosen_on": None,
        "note": "no validation split: the zero-shot prompt is used",
        "candidates": [],
    }
    comparison = _comparison(prompt_search={"champion": search, "challenger": None})
    folder = _write_compare(tmp_path / "cmp", comparison, _outputs(20), _outputs(20))
    html = render_html(load_report_data(folder))
    assert "champion: no validation split: the zero-shot prompt is used." in html
    assert WARNING not in html


def test_old_run_folder_renders_with_na(tmp_path: Path) -> None:
    run = _write_old_run(tmp_path / "run", _outputs(20, empty=5))
    html_path, json_path = write_report(run)
    html = html_path.read_text()
    assert "<td>run</td><td>n/a</td><td>n/a</td><td>n/a</td><td>n/a</td><td>n/a</td>" in html  # prompt
    assert "<td>run</td><td>n/a</td><td>n/a</td><td>n/a</td></tr>" in html  # output checks
    assert WARNING not in html and "[empty" not in html  # unknown, not "zero" and not "empty"
    data = json.loads(json_path.read_text())
    assert data["prompts"]["run"] is None and data["output_checks"]["run"] is None
    assert data["runs"]["run"]["empty_rate"] is None and data["runs"]["run"]["counts"] is None


def test_old_compare_folder_renders_with_na(tmp_path: Path) -> None:
    folder = tmp_path / "cmp"
    _write_old_run(folder / "champion", _outputs(20), model="base")
    _write_old_run(folder / "challenger", _outputs(20), model="tuned")
    (folder / "comparison.json").write_text(json.dumps(_comparison()), encoding="utf-8")
    html_path, json_path = write_report(folder)
    html = html_path.read_text()
    assert "base vs tuned" in html and "[+0.0500, +0.2500]" in html
    assert html.count("<td>n/a</td><td>n/a</td><td>n/a</td></tr>") >= 4  # 2 prompt rows, 2 check rows
    assert "How the baseline prompt was chosen" not in html
    data = json.loads(json_path.read_text())
    assert data["prompt_search"] is None and data["output_checks"] == {"champion": None, "challenger": None}


def test_prompts_fall_back_to_the_comparison_record(tmp_path: Path) -> None:
    """A comparison whose result files predate prompts but whose comparison.json records them."""
    folder = tmp_path / "cmp"
    _write_old_run(folder / "champion", _outputs(4), model="base")
    _write_old_run(folder / "challenger", _outputs(4), model="tuned")
    comparison = _comparison(prompts={"champion": FEW_SHOT, "challenger": {}})
    (folder / "comparison.json").write_text(json.dumps(comparison), encoding="utf-8")
    html = render_html(load_report_data(folder))
    assert "<td>champion</td><td>qa-&lt;short&gt;@3</td><td>builtin</td><td>chat</td>" in html
    assert "<td>challenger</td><td>n/a</td>" in html
