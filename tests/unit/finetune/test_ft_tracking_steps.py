"""`lmf finetune` streams step and eval metrics into one MLflow run while it trains; a broken
tracker warns once and training goes on (fresh migrated db per test: the `mlflow_db` fixture)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from lmfoundry.cli.main import main
from lmfoundry.cli.tracking_steps import StepTracker
from lmfoundry.track import runs


@pytest.fixture(autouse=True)
def _tracking_on(monkeypatch: pytest.MonkeyPatch, mlflow_db: Path) -> None:
    monkeypatch.delenv("LMF_TRACK", raising=False)  # the suite may turn CLI tracking off globally


def _finetune(config: dict[str, Any], tmp_path: Path, *extra: str) -> list[str]:
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return ["finetune", str(path), "--json", *extra]


def _history(client: Any, run_id: str, key: str) -> dict[int, float]:
    """{step: value} of a metric; one entry per logged step (a step logged twice would fail the len check)."""
    history = client.get_metric_history(run_id, key)
    assert len({m.step for m in history}) == len(history)
    return {m.step: m.value for m in history}


def test_finetune_streams_step_metrics_into_one_run(
    ft_config: Callable[..., dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ft_config(training={"max_steps": 3, "eval_every": 2, "save_every": 0})
    assert main(_finetune(config, tmp_path)) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    run_id = summary["run_id"]
    assert run_id and f"tracked finetune run {run_id}" in captured.err and "lmf: warning" not in captured.err

    client = runs.client()
    experiment = client.get_experiment_by_name("lmf-finetune")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [run_id]
    records = [
        json.loads(line) for line in Path(summary["run_dir"], "metrics.jsonl").read_text().splitlines()
    ]
    train = {r["step"]: r["loss"] for r in records if r["kind"] == "train"}
    evals = {r["step"]: r["eval_loss"] for r in records if r["kind"] == "eval"}
    assert list(train) == [1, 2, 3] and list(evals) == [0, 2, 3]
    assert _history(client, run_id, "train/loss") == pytest.approx(train)
    assert _history(client, run_id, "eval/loss") == pytest.approx(evals)
    assert sorted(_history(client, run_id, "train/lr")) == [1, 2, 3]

    run = runs.get_run(run_id)
    assert run["status"] == "FINISHED" and run["kind"] == "finetune"
    assert run["metrics"]["train_loss"] == pytest.approx(summary["train_loss"])
    assert run["metrics"]["eval_loss"] == pytest.approx(summary["eval_loss"])
    assert run["params"]["training.max_steps"] == "3"


def test_broken_tracker_warns_once_and_trains_to_the_end(
    ft_config: Callable[..., dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("LMF_TRACKING_URI", f"sqlite:///{blocker}/mlflow.db")
    config = ft_config(training={"max_steps": 2, "eval_every": 0, "save_every": 0})
    assert main(_finetune(config, tmp_path)) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["run_id"] is None
    assert captured.err.count("lmf: warning: run not tracked") == 1 and str(blocker) in captured.err
    assert "tracked finetune run" not in captured.err


def test_tracker_failing_mid_run_warns_once_then_stops(capsys: pytest.CaptureFixture[str]) -> None:
    tracker = StepTracker("finetune", run_name="mid-run")
    tracker.on_step(SimpleNamespace(step=1), {"step": 1, "loss": 2.0, "lr": 0.1})
    assert tracker.run_id and not tracker.failed
    runs.client().delete_run(tracker.run_id)  # MLflow refuses metrics for a deleted run
    tracker.on_step(SimpleNamespace(step=2), {"step": 2, "loss": 1.5, "lr": 0.1})
    tracker.on_eval(SimpleNamespace(step=2), {"step": 2, "eval_loss": 1.4})
    err = capsys.readouterr().err
    assert tracker.failed and err.count("\n") == 1 and err.startswith("lmf: warning: run not tracked")
    assert _history(runs.client(), tracker.run_id, "train/loss") == {1: 2.0}
