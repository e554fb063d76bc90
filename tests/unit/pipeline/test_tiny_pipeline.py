"""A real pipeline on the tiny model: data -> finetune -> evaluate -> a gate that must fail, which
stops the run before register (nothing reaches the registry)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmfoundry.cli.main import main


def tiny_stages(tiny_long_dir: Path, finetune_yaml: Path, min_rouge: float) -> list[dict[str, Any]]:
    return [
        {"kind": "data", "n": 40, "seed": 0},
        {"kind": "finetune", "config": str(finetune_yaml), "overrides": ["data.path=${data.path}"]},
        {"kind": "evaluate", "model": str(tiny_long_dir), "adapter": "${finetune.adapter_path}",
         "data_dir": "${data.path}", "limit": 3, "max_new_tokens": 6, "n_boot": 200},
        {"kind": "gate", "comparison": "${evaluate.comparison}",
         "rules": {"absolute": [{"metric": "rougeL", "min": min_rouge}]}},
        {"kind": "register", "needs": ["gate"], "registry": "tiny-summ", "model": str(tiny_long_dir),
         "adapter": "${finetune.adapter_path}", "run_id": "${finetune.run_id}"},
    ]  # fmt: skip


def write_finetune_yaml(folder: Path, tiny_long_dir: Path) -> Path:
    config = {
        "model": {"name": str(tiny_long_dir)},
        "data": {"path": "set-by-pipeline", "template": "summarize", "max_length": 1024, "eval_limit": 4},
        "method": {
            "name": "lora",
            "options": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        },
        "training": {
            "max_steps": 2,
            "batch_size": 2,
            "lr": 0.01,
            "eval_every": 0,
            "save_every": 0,
            "threads": 1,
        },
    }
    path = folder / "tiny-lora.yaml"
    path.write_text("# lmf finetune tiny-lora.yaml\n" + yaml.safe_dump(config))
    return path


def test_failing_gate_stops_a_real_pipeline_before_register(
    write_pipeline: Callable[..., Path],
    tiny_long_dir: Path,
    tmp_path: Path,
    mlflow_db: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lmfoundry.track import runs
    from lmfoundry.track.registry import list_models

    stages = tiny_stages(tiny_long_dir, write_finetune_yaml(tmp_path, tiny_long_dir), min_rouge=0.99)
    path = write_pipeline(stages, tracking={"enabled": True})
    assert main(["pipeline", "run", str(path), "--json"]) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["failed_stage"] == "gate" and not result["ok"], result["error"]
    assert [s["status"] for s in result["stages"]] == ["done", "done", "done", "failed", "not run"]
    assert "failed at stage 'gate'" in captured.err
    assert list_models() == []
    finetune, evaluate = result["stages"][1]["outputs"], result["stages"][2]["outputs"]
    assert (Path(finetune["adapter_path"]) / "adapter_config.json").is_file()
    assert evaluate["n"] == 3 and set(evaluate["metrics"]) >= {"rouge1", "rougeL"}
    logged = runs.get_run(finetune["run_id"])  # the finetune run is tracked in MLflow
    assert logged["kind"] == "finetune" and logged["params"]["method.name"] == "lora"
    assert logged["metrics"]["train_loss"] == pytest.approx(finetune["train_loss"])
    assert runs.get_run(evaluate["run_id"])["kind"] == "eval"
    report = (tmp_path / "work" / "report.html").read_text()
    assert "failed at stage gate" in report and "paired examples" in report or "rougeL" in report
