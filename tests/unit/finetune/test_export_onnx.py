"""`lmf export onnx`: the graph has a KV cache, runs are merged, parity holds, failures are clean."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.errors import LmfError

pytest.importorskip("onnxruntime_genai")

FP32_DIFF = 1e-4
"""fp32 export vs fp32 transformers: rounding only (measured ~2e-7 on the tiny model)."""
INT8_DIFF, INT8_AGREEMENT = 0.05, 0.9
"""int8 on the tiny model: measured max |logit diff| ~0.007, greedy agreement ~0.98."""


def _export(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["export", "onnx", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _fails(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run `lmf ARGS`, expect exit code 1, return its stderr."""
    assert main(list(args)) == 1
    return capsys.readouterr().err


def _train(ft_config: Callable[..., dict[str, Any]]) -> str:
    from lmfoundry.finetune.config import finetune_config_from_dict
    from lmfoundry.finetune.run import run_finetune

    config = finetune_config_from_dict(
        ft_config("lora", training={"max_steps": 3, "lr": 3e-2, "eval_every": 0})
    )
    return str(run_finetune(config, progress=False)["run_dir"])


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_qwen2_dir"])
def test_fp32_export_has_a_kv_cache_and_matches_transformers(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx

    model_dir, out = request.getfixturevalue(fixture), tmp_path / "m-onnx"
    result = _export(capsys, str(model_dir), "--out", str(out))
    parity = result["parity"]
    assert parity["ok"] and parity["greedy_agreement"] == 1.0 and parity["prefix_agreement"] == 1.0
    assert parity["max_logit_diff"] < FP32_DIFF and len(parity["prompts"]) == 4
    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    inputs, outputs = {i.name for i in graph.input}, {o.name for o in graph.output}
    layers = 2  # tests/tiny.py
    assert {f"past_key_values.{n}.{kv}" for n in range(layers) for kv in ("key", "value")} <= inputs
    assert {f"present.{n}.{kv}" for n in range(layers) for kv in ("key", "value")} <= outputs
    assert result["kv_cache_inputs"] == result["kv_cache_outputs"] == 2 * layers
    assert {"input_ids", "attention_mask"} <= inputs and "logits" in outputs
    assert (out / "genai_config.json").is_file() and (out / "tokenizer.json").is_file()
    assert json.loads((out / "lmf_onnx.json").read_text())["source"] == str(model_dir)
    _plain_onnxruntime_feeds_its_own_kv_cache(out, model_dir)


def _plain_onnxruntime_feeds_its_own_kv_cache(out: Path, model_dir: Path) -> None:
    """Without onnxruntime-genai: prefill with an empty cache, then one step on the returned one."""
    import numpy as np
    import onnxruntime
    import torch
    from transformers import AutoModelForCausalLM

    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    decoder = json.loads((out / "genai_config.json").read_text())["model"]["decoder"]
    empty = np.zeros((1, decoder["num_key_value_heads"], 0, decoder["head_size"]), np.float32)
    ids = [5, 17, 42, 99, 7]
    feed = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
    feed |= {i.name: empty for i in session.get_inputs() if i.name.startswith("past_key_values.")}
    prefill = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
    token = int(prefill["logits"][0, -1].argmax())
    feed = {
        "input_ids": np.array([[token]], np.int64),
        "attention_mask": np.ones((1, len(ids) + 1), np.int64),
    }
    feed |= {k.replace("present.", "past_key_values."): v for k, v in prefill.items() if k != "logits"}
    step = session.run(["logits"], feed)[0]
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([[*ids, token]])).logits[0].numpy()
    assert np.abs(prefill["logits"][0] - expected[:-1]).max() < FP32_DIFF
    assert np.abs(step[0, -1] - expected[-1]).max() < FP32_DIFF


def test_int8_store_model_goes_to_its_store_folder_within_the_stated_tolerance(
    tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmfoundry.models import store

    store.pull(str(tiny_llama_dir), "tiny")
    result = _export(capsys, "tiny", "--quantize", "int8")
    assert Path(result["path"]) == store.entry_dir("tiny") / "onnx-int8"
    parity = result["parity"]
    assert parity["ok"] and (parity["threshold"], parity["max_diff"]) == (0.85, 3.0)
    assert parity["max_logit_diff"] < INT8_DIFF and parity["greedy_agreement"] >= INT8_AGREEMENT
    assert result["precision"] == "int8" and result["kv_cache_inputs"] == 4
    # an entry made by `lmf quantize` is refused: its weights are no longer the fp32 reference
    assert main(["quantize", "tiny", "--method", "int8", "--name", "tiny-int8"]) == 0
    capsys.readouterr()
    assert "holds int8 weights; export the fp32 model" in _fails(capsys, "export", "onnx", "tiny-int8")


def test_a_lora_run_is_merged_before_export(
    ft_config: Callable[..., dict[str, Any]],
    tiny_llama_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, out = _train(ft_config), tmp_path / "run-onnx"
    parity = _export(capsys, run, "--out", str(out))["parity"]
    assert parity["ok"] and parity["greedy_agreement"] == 1.0 and parity["max_logit_diff"] < FP32_DIFF
    # the standalone check finds the run in the folder's record and agrees again ...
    assert main(["export", "onnx-check", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_logit_diff"] < FP32_DIFF
    # ... and the base model without the adapter is not what was exported: the merge took effect
    assert main(["export", "onnx-check", str(out), "--reference", str(tiny_llama_dir), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["max_logit_diff"] > 100 * FP32_DIFF and "MISMATCH" in captured.err


def test_an_existing_output_is_refused_unless_forced(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert "already exists (pass --force" in _fails(
        capsys, "export", "onnx", str(tiny_llama_dir), "--out", str(out)
    )
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["export", "onnx", str(tiny_llama_dir), "--out", str(out), "--force", "--no-check"]) == 0
    assert not (out / "keep.txt").exists() and (out / "model.onnx").is_file()
    assert "parity" not in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    err = _fails(capsys, "export", "onnx", str(tiny_llama_dir), "--out", str(tmp_path / "file"), "--force")
    assert "is not a folder" in err


def test_a_failing_exporter_leaves_nothing_behind(
    tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnxruntime_genai.models import builder

    from lmfoundry.finetune.export.onnx import export_onnx

    def half_written(model_name: str, input_path: str, output_dir: str, *args: Any, **kwargs: Any) -> None:
        (Path(output_dir) / "model.onnx").write_bytes(b"partial")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(builder, "create_model", half_written)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_onnx(str(tiny_llama_dir), out=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # no output, no partial folder, no temp checkpoint


def test_refuses_models_that_are_not_llama_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    from tiny import build_tokenizer

    tokenizer, model_dir = build_tokenizer(), tmp_path / "gpt2"
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    err = _fails(capsys, "export", "onnx", str(model_dir), "--out", str(tmp_path / "out"))
    assert "GPT2LMHeadModel; `lmf export onnx` supports Llama-family" in err
    assert not (tmp_path / "out").exists()


def test_bad_input_is_reported_before_any_work(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"  # a run whose training never saved its adapter
    run.mkdir()
    (run / "resolved_config.yaml").write_text("stage: sft\n")
    assert "fine-tuning run with no saved adapter" in _fails(capsys, "export", "onnx", str(run))
    err = _fails(capsys, "export", "onnx", str(tiny_llama_dir), "--threshold", "2")
    assert "--threshold must be in [0, 1]" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "onnx", str(tiny_llama_dir), "--quantize", "int3"])
    assert exit_info.value.code == 2
    assert "not an `lmf export onnx` folder" in _fails(capsys, "export", "onnx-check", str(tmp_path))


def test_a_missing_runtime_names_the_extra(
    tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmfoundry.finetune.export.onnx import export_onnx

    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)
    with pytest.raises(LmfError, match=r"lmfoundry\[onnx\]"):
        export_onnx(str(tiny_llama_dir), out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
