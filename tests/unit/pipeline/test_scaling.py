"""The scale-out switches of docs/scaling.md are configuration: they parse, and select the engine."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.execute import tracking_uri
from lmfoundry.pipeline.spec import build_options, load_pipeline
from lmfoundry.pipeline.stages import finetune

FINETUNE_YAML = Path(__file__).resolve().parents[3] / "configs" / "finetune" / "quickstart-lora.yaml"


def test_scaled_out_pipeline_parses(write_pipeline: Callable[..., Path]) -> None:
    spec = load_pipeline(write_pipeline([
        {"kind": "finetune", "config": str(FINETUNE_YAML), "launcher": "accelerate",
         "accelerate_config": "/etc/lmf/fsdp.yaml", "num_processes": 8},
        {"kind": "register", "registry": "m", "model": "base", "adapter": "${finetune.adapter_path}"},
        {"kind": "deploy", "needs": ["register"], "registry": "m", "url": "http://vllm:8000",
         "server_kind": "vllm", "served_model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        {"kind": "rag-index", "store": "docs", "backend": "qdrant"},
    ], tracking={"enabled": True, "uri": "http://mlflow.internal:5000"}))  # fmt: skip
    assert spec.tracking.uri == "http://mlflow.internal:5000"
    deploy = build_options(spec.stage("deploy"), {})
    assert (deploy.url, deploy.server_kind) == ("http://vllm:8000", "vllm")
    assert build_options(spec.stage("rag-index"), {}).backend == "qdrant"
    options = build_options(spec.stage("finetune"), {})
    command = finetune.accelerate_command(FINETUNE_YAML, ["training.max_steps=5"], options)
    assert command == ["accelerate", "launch", "--config_file", "/etc/lmf/fsdp.yaml", "--num_processes", "8",
                       "-m", "lmfoundry.cli.main", "finetune", str(FINETUNE_YAML), "training.max_steps=5"]  # fmt: skip


def test_tracking_uri_applies_for_the_run_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from lmfoundry.track.runs import tracking_uri as current

    monkeypatch.delenv("LMF_TRACKING_URI", raising=False)
    local = current()
    with tracking_uri("http://mlflow.internal:5000"):
        assert current() == "http://mlflow.internal:5000"
    assert current() == local and "LMF_TRACKING_URI" not in os.environ
    with tracking_uri(None):
        assert current() == local


def test_unknown_launcher_is_an_error(tmp_path: Path) -> None:
    ctx = StageContext("finetune", tmp_path, tmp_path / "work", {})
    with pytest.raises(InvalidInputError, match="launcher must be local or accelerate"):
        finetune.run(ctx, finetune.Options(config=str(FINETUNE_YAML), launcher="slurm"))
