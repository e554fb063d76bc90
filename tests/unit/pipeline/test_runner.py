"""Running pipelines: caching in state.json, --from, --force, failures that stop the run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.errors import InvalidInputError
from lmfoundry.pipeline.execute import run_pipeline
from lmfoundry.pipeline.spec import load_pipeline


def _comparison(path: Path, challenger: float) -> Path:
    metric = {"champion": 0.2, "challenger": challenger, "diff": challenger - 0.2,
              "ci_low": challenger - 0.25, "ci_high": challenger - 0.15, "wins": 1, "ties": 0, "losses": 0}  # fmt: skip
    path.write_text(json.dumps({"task": "t", "champion_model": "a", "challenger_model": "b", "n": 3,
                                "confidence": 0.95, "metrics": {"rougeL": metric}}))  # fmt: skip
    return path


def _stages(comparison: Path, min_rouge: float = 0.1) -> list[dict[str, Any]]:
    return [
        {"kind": "data", "n": 30, "seed": 1},
        {"kind": "gate", "needs": ["data"], "comparison": str(comparison),
         "rules": {"absolute": [{"metric": "rougeL", "min": min_rouge}]}},
    ]  # fmt: skip


def _statuses(result: Any) -> list[str]:
    return [s.status for s in result.stages]


def test_second_run_reuses_finished_stages(write_pipeline: Callable[..., Path], tmp_path: Path) -> None:
    spec = load_pipeline(write_pipeline(_stages(_comparison(tmp_path / "c.json", 0.3))))
    first = run_pipeline(spec)
    assert first.ok and _statuses(first) == ["done", "done"]
    data_dir = Path(first.stages[0].outputs["path"])
    assert sorted(p.name for p in data_dir.glob("*.jsonl")) == [
        "test.jsonl",
        "train.jsonl",
        "validation.jsonl",
    ]
    assert sum(first.stages[0].outputs["sizes"].values()) == 30
    state = json.loads((spec.workdir / "state.json").read_text())
    assert {k: v["status"] for k, v in state["stages"].items()} == {"data": "done", "gate": "done"}
    mtime = (data_dir / "train.jsonl").stat().st_mtime_ns
    second = run_pipeline(spec)
    assert _statuses(second) == ["cached", "cached"] and second.outputs() == first.outputs()
    assert (data_dir / "train.jsonl").stat().st_mtime_ns == mtime


def test_from_and_force(write_pipeline: Callable[..., Path], tmp_path: Path) -> None:
    spec = load_pipeline(write_pipeline(_stages(_comparison(tmp_path / "c.json", 0.3))))
    run_pipeline(spec)
    assert _statuses(run_pipeline(spec, from_stage="gate")) == ["cached", "done"]
    assert _statuses(run_pipeline(spec, force=True)) == ["done", "done"]
    with pytest.raises(InvalidInputError, match="no stage 'nope'"):
        run_pipeline(spec, from_stage="nope")


def test_from_needs_earlier_stages_finished(write_pipeline: Callable[..., Path], tmp_path: Path) -> None:
    spec = load_pipeline(write_pipeline(_stages(_comparison(tmp_path / "c.json", 0.3))))
    with pytest.raises(InvalidInputError, match="has not finished"):
        run_pipeline(spec, from_stage="gate")


def test_changed_inputs_rerun_only_what_depends_on_them(
    write_pipeline: Callable[..., Path], tmp_path: Path
) -> None:
    comparison = _comparison(tmp_path / "c.json", 0.3)
    spec = load_pipeline(write_pipeline(_stages(comparison)))
    first = run_pipeline(spec)
    _comparison(comparison, 0.4)  # a file an option names changed
    assert _statuses(run_pipeline(spec)) == ["cached", "done"]
    # deleted outputs are rebuilt; identical bytes leave the dependent stage cached
    (Path(first.stages[0].outputs["path"]) / "train.jsonl").unlink()
    assert _statuses(run_pipeline(spec)) == ["done", "cached"]


def test_failing_gate_stops_before_register(
    write_pipeline: Callable[..., Path], tmp_path: Path, mlflow_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmfoundry.track.registry import list_models

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    stages = _stages(_comparison(tmp_path / "c.json", 0.3), min_rouge=0.9)
    stages.append(
        {"kind": "register", "needs": ["gate"], "registry": "summ", "model": "base", "adapter": str(adapter)}
    )
    path = write_pipeline(stages)
    assert main(["pipeline", "run", str(path), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "failed at stage 'gate'" in captured.err and "gates failed: rougeL" in captured.err
    assert "| rougeL | challenger >= 0.9 | 0.3000 | ❌ fail |" in captured.err
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    assert state["stages"]["gate"]["status"] == "failed" and "register" not in state["stages"]
    assert list_models() == []
    report = (tmp_path / "work" / "report.html").read_text()
    assert "failed at stage gate" in report and "not run" in report
    # the same pipeline with a passing gate registers the champion
    path.write_text(path.read_text().replace("min: 0.9", "min: 0.1"))
    assert main(["pipeline", "run", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [s["status"] for s in out["stages"]] == ["cached", "done", "done"]
    assert list_models()[0]["aliases"] == {"champion": 1}


def test_a_stage_error_is_recorded_and_named(write_pipeline: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("[1, 2]")  # not a comparison mapping
    spec = load_pipeline(write_pipeline([{"kind": "gate", "comparison": str(tmp_path / "broken.json"),
                                          "rules": {"absolute": [{"metric": "rougeL", "min": 0.1}]}}]))  # fmt: skip
    result = run_pipeline(spec)
    assert result.failed_stage == "gate" and "not a comparison" in (result.error or "")


def test_status_and_stop_commands(
    write_pipeline: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pipeline(_stages(_comparison(tmp_path / "c.json", 0.3)))
    assert main(["pipeline", "status", str(path), "--json"]) == 0
    assert [s["status"] for s in json.loads(capsys.readouterr().out)["stages"]] == ["never run", "never run"]
    assert main(["pipeline", "run", str(path), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["pipeline", "status", str(path)]) == 0
    assert "server: not running" in capsys.readouterr().out
    assert main(["pipeline", "stop", str(path)]) == 0
    assert "no server recorded" in capsys.readouterr().out
