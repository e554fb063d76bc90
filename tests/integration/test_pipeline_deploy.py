"""A whole pipeline on the tiny model with a real background server: finetune -> evaluate -> gate ->
register -> deploy (starts `lmf serve`) -> RAG answer through it -> HTTP parity smoke test; a second
run reuses every stage; `lmf pipeline stop` stops the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lmfoundry.cli.main import main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_long_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny import build_model, build_tokenizer

    path = tmp_path_factory.mktemp("tiny_long")
    tokenizer = build_tokenizer()
    build_model("llama", vocab_size=len(tokenizer), max_position_embeddings=2048).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _pipeline(tmp_path: Path, model: Path) -> Path:
    finetune = {
        "model": {"name": str(model)},
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
    (tmp_path / "ft.yaml").write_text("# lmf finetune ft.yaml\n" + yaml.safe_dump(finetune))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "assert.txt").write_text("The assert statement raises AssertionError when its test is false.\n")
    stages = [
        {"kind": "data", "n": 40},
        {"kind": "finetune", "config": "ft.yaml", "overrides": ["data.path=${data.path}"]},
        {"kind": "evaluate", "model": str(model), "adapter": "${finetune.adapter_path}",
         "data_dir": "${data.path}", "limit": 2, "max_new_tokens": 6, "n_boot": 100},
        {"kind": "gate", "comparison": "${evaluate.comparison}", "rules": {"latency_p95_s": {"max": 600}}},
        {"kind": "register", "needs": ["gate"], "registry": f"tiny-{tmp_path.name}"[:60], "model": str(model),
         "adapter": "${finetune.adapter_path}", "run_id": "${finetune.run_id}"},
        {"kind": "deploy", "needs": ["register"], "registry": f"tiny-{tmp_path.name}"[:60], "threads": 1},
        {"kind": "rag-index", "paths": ["docs"], "store": f"docs-{tmp_path.name}"[:60]},
        {"kind": "rag-ask", "store": "${rag-index.store}", "question": "What does assert raise?",
         "url": "${deploy.url}", "model": "${deploy.base_model_id}", "tokenizer": str(model),
         "max_new_tokens": 8, "k": 1},
        {"kind": "smoke-test", "url": "${deploy.url}", "model": "${deploy.model_id}",
         "evaluation": "${evaluate.compare_dir}/challenger", "data_dir": "${data.path}", "n": 2},
    ]  # fmt: skip
    path = tmp_path / "tiny.yaml"
    data = {"name": "tiny", "workdir": str(tmp_path / "work"), "stages": stages}
    path.write_text("# lmf pipeline run tiny.yaml\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def test_tiny_pipeline_deploys_answers_and_caches(
    tmp_path: Path, tiny_long_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmfoundry.pipeline.server_control import is_our_process, read_record

    path = _pipeline(tmp_path, tiny_long_dir)
    try:
        assert main(["pipeline", "run", str(path), "--json"]) == 0, capsys.readouterr().err[-3000:]
        first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert all(s["status"] == "done" for s in first["stages"])
        outputs = {s["name"]: s["outputs"] for s in first["stages"]}
        assert outputs["smoke-test"]["parity"] == 1.0
        assert outputs["rag-ask"]["retrieved"] and outputs["deploy"]["model_id"].endswith(":champion")
        record = read_record(tmp_path / "work")
        assert record is not None and is_our_process(record.pid)
        assert main(["pipeline", "run", str(path), "--json"]) == 0
        second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert [s["status"] for s in second["stages"]] == ["cached"] * 8 + ["cached"]
        assert (tmp_path / "work" / "report.html").is_file()
    finally:
        assert main(["pipeline", "stop", str(path)]) == 0
    assert "stopped the server" in capsys.readouterr().out
    assert not is_our_process(record.pid)
