"""`lmf eval run` and `lmf quantize` record their runs in MLflow unless --no-track / LMF_TRACK=0;
a missing mlflow or a broken tracker only prints a line on stderr (every test has a fresh copy of
the migrated db: the `mlflow_db` fixture of tests/conftest.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.cli.tracking import track_cli_run
from lmfoundry.track import runs


@pytest.fixture(autouse=True)
def _tracking_on(monkeypatch: pytest.MonkeyPatch, mlflow_db: Path) -> None:
    monkeypatch.delenv("LMF_TRACK", raising=False)  # the suite may turn CLI tracking off globally


def _run_ids(kind: str) -> list[str]:
    client = runs.client()
    experiment = client.get_experiment_by_name(f"lmf-{kind}")
    if experiment is None:
        return []
    return [r.info.run_id for r in client.search_runs([experiment.experiment_id])]


def _eval_argv(model: Path, tmp_path: Path, out: Path) -> list[str]:
    task = tmp_path / "qa.jsonl"
    rows = [{"id": "a", "input": "Capital of France?", "reference": "Paris"},
            {"id": "b", "input": "2 + 2?", "reference": "4"}]  # fmt: skip
    task.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return ["eval", "run", str(model), "--task", f"jsonl:{task}", "--out", str(out), "--json",
            "--no-progress", "--max-new-tokens", "3"]  # fmt: skip


def test_eval_run_is_tracked(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(_eval_argv(tiny_llama_dir, tmp_path, out)) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    run_id = printed["run_id"]
    assert run_id and f"tracked eval run {run_id}" in captured.err

    assert _run_ids("eval") == [run_id]
    run = runs.get_run(run_id)
    results = json.loads((out / "results.json").read_text())
    assert run["kind"] == "eval" and run["status"] == "FINISHED"
    assert run["params"]["model"] == str(tiny_llama_dir) and run["params"]["n"] == "2"
    assert run["params"]["task"] == results["task"]
    assert run["params"]["sampling.max_new_tokens"] == "3"
    for metric, value in results["metrics"].items():
        assert run["metrics"][metric] == pytest.approx(value)
    assert run["metrics"]["latency.e2e_s.p50"] == pytest.approx(results["latency"]["e2e_s"]["p50"])
    stored = Path(run["artifact_uri"].removeprefix("file://"))
    assert json.loads((stored / "results.json").read_text()) == results


def test_no_track_and_lmf_track_0_create_no_run(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main([*_eval_argv(tiny_llama_dir, tmp_path, tmp_path / "a"), "--no-track"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["run_id"] is None and "tracked" not in captured.err
    monkeypatch.setenv("LMF_TRACK", "0")
    assert main(_eval_argv(tiny_llama_dir, tmp_path, tmp_path / "b")) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] is None
    assert _run_ids("eval") == []


def test_quantize_is_tracked_and_no_track_is_not(
    tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmfoundry.models import store

    store.pull(str(tiny_llama_dir), "tiny")
    assert main(["quantize", "tiny", "--method", "int8", "--block-size", "32", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    run = runs.get_run(summary["run_id"])
    assert f"tracked quantize run {summary['run_id']}" in captured.err
    assert run["kind"] == "quantize" and run["status"] == "FINISHED"
    assert {k: run["params"][k] for k in ("model", "method", "name", "block_size")} == {
        "model": "tiny", "method": "int8", "name": "tiny-int8", "block_size": "32"
    }  # fmt: skip
    weights = Path(summary["weights"])
    assert run["metrics"]["size_bytes"] == weights.stat().st_size
    assert run["metrics"]["bits_per_param"] == pytest.approx(summary["quantization"]["bits_per_param"])
    assert "perplexity" not in run["metrics"]  # no --report: no quality numbers, not NaN

    assert main(["quantize", "tiny", "--method", "fp4", "--json", "--no-track"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] is None
    assert _run_ids("quantize") == [summary["run_id"]]


def test_missing_mlflow_is_one_note(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what importlib sees when it is not installed
    assert track_cli_run(argparse.Namespace(no_track=False), "eval", {"model": "m"}, {"x": 1.0}) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mlflow is not installed" in err and "--no-track" in err


def test_broken_tracker_warns_and_does_not_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("LMF_TRACKING_URI", f"sqlite:///{blocker}/mlflow.db")
    args: Any = argparse.Namespace(no_track=False)
    assert track_cli_run(args, "eval", {"model": "m"}, {"x": 1.0}) is None
    err = capsys.readouterr().err
    assert "warning: run not tracked" in err and str(blocker) in err and "--no-track" in err
