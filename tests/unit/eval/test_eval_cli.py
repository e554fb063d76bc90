"""`lmf eval run` and `lmf eval compare` on the tiny model directories, then `lmf eval gate` on the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfoundry.cli.main import main


def _qa_file(tmp_path: Path) -> Path:
    path = tmp_path / "qa.jsonl"
    rows = [
        {"id": "a", "input": "Question: What is the capital of France?\nAnswer:", "reference": "Paris"},
        {"id": "b", "input": "Question: What is 2 + 2?\nAnswer:", "reference": "4"},
        {"id": "c", "input": "Question: Who wrote Hamlet?\nAnswer:", "reference": "Shakespeare"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_run_json(tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["eval", "run", str(tiny_llama_dir), "--task", "closed-book-qa", "--limit", "2",
            "--out", str(out), "--json", "--no-progress", "--max-new-tokens", "4"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 2
    assert summary["params"]["max_new_tokens"] == 4
    assert set(summary["metrics"]) == {"exact_match", "token_f1"}
    assert {"empty_rate", "truncated_rate", "cut_at_start_rate", "prompt"} <= set(summary)
    assert summary["prompt"]["name"] == "closed-book-qa" and summary["prompt"]["form"] == "chat"
    assert json.loads((out / "results.json").read_text())["metrics"] == summary["metrics"]
    assert len((out / "outputs.jsonl").read_text().splitlines()) == 2


def test_eval_run_text_output(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "run", str(tiny_llama_dir), "--task", f"jsonl:{_qa_file(tmp_path)}", "--limit", "1",
            "--no-progress", "--max-new-tokens", "3"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "rougeL" in out and "cost per 1M tokens" in out and "results.json" in out
    assert "empty outputs" in out and "instruct@builtin" in out


def test_eval_compare_then_gate(
    tiny_llama_dir: Path, tiny_qwen2_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    argv = ["eval", "compare", str(tiny_llama_dir), str(tiny_qwen2_dir), "--task", f"jsonl:{_qa_file(tmp_path)}",
            "--out", str(out), "--json", "--no-progress", "--max-new-tokens", "4", "--n-boot", "200"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n"] == 3
    for metric in ("exact_match", "token_f1", "rougeL"):
        entry = printed["metrics"][metric]
        assert {"champion", "challenger", "diff", "ci_low", "ci_high", "wins", "ties", "losses"} <= set(entry)
        assert entry["wins"] + entry["ties"] + entry["losses"] == 3
    assert "e2e_s_p95" in printed["latency"]
    assert (out / "champion" / "results.json").is_file() and (out / "challenger" / "outputs.jsonl").is_file()
    assert set(printed["outputs"]) == {"empty_rate", "cut_at_start_rate", "truncated_rate"}
    # jsonl tasks have no validation split: the search says so and keeps the zero-shot prompt
    assert "zero-shot prompt is used" in printed["prompt_search"]["champion"]["note"]

    comparison = out / "comparison.json"
    passing, failing = tmp_path / "pass.yaml", tmp_path / "fail.yaml"
    passing.write_text(
        "absolute:\n  - metric: token_f1\n    min: 0.0\n"
    )  # (random tiny models: empty outputs)
    failing.write_text("absolute:\n  - metric: token_f1\n    min: 1.01\n")
    assert main(["eval", "gate", str(passing), "--comparison", str(comparison)]) == 0
    assert main(["eval", "gate", str(failing), "--comparison", str(comparison)]) == 1


def test_unknown_task_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "run", str(tmp_path), "--task", "nope"]) == 1
    err = capsys.readouterr().err
    assert "unknown task 'nope'" in err and "closed-book-qa" in err
