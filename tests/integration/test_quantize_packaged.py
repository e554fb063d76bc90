"""`lmf quantize` on the packaged SmolLM2: an nf4 + double-quant entry and a GGUF q8_0 entry."""

from __future__ import annotations

import json

import pytest

import lmfoundry
from lmfoundry.cli.main import main
from lmfoundry.models import store

PACKAGED = "smollm2-135m-instruct"
pytestmark = pytest.mark.integration


def test_nf4_double_quant_entry_is_small_and_still_answers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", PACKAGED, "--method", "nf4", "--double-quant", "--force", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["name"] == "smollm2-135m-instruct-nf4-dq"
    assert out["bits_per_param"] <= 4.2
    assert out["size_bytes"] < 0.35 * (store.entry_dir(PACKAGED) / "model.safetensors").stat().st_size
    model = lmfoundry.load(out["name"])
    assert model.backend == "transformers"
    assert model.generate("The capital of France is", temperature=0, max_new_tokens=6).completion_tokens > 0


def test_gptq_nf4_double_quant_keeps_perplexity_near_fp32(
    capsys: pytest.CaptureFixture[str], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Round-to-nearest nf4 + dq costs +28% perplexity on this model; GPTQ must stay well under that."""
    argv = ["quantize", PACKAGED, "--method", "nf4", "--double-quant", "--gptq", "--force", "--json"]
    argv += ["--calibration-samples", "16", "--report", "--no-perf", "--tokens", "1024"]
    argv += ["--out", str(tmp_path)]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["name"] == "smollm2-135m-instruct-nf4-dq-gptq"
    assert out["bits_per_param"] <= 4.2
    assert out["quantization"]["calibration"]["tokens"] == 16 * 256
    assert out["perplexity"] / out["perplexity_fp32"] < 1.12
    assert out["kl_divergence"] < 0.2


def test_gguf_q8_0_entry_runs_on_llama_cpp_and_scores_like_fp32(
    capsys: pytest.CaptureFixture[str], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("llama_cpp")
    from lmfoundry.generate.engine import load_model
    from lmfoundry.quantize.report_speed import measure_perf

    argv = ["quantize", PACKAGED, "--method", "gguf-q8_0", "--force", "--report", "--no-perf", "--json"]
    assert main([*argv, "--tokens", "256", "--window", "128", "--out", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["report"][-1]["tokenizer_match"] is True
    assert out["kl_divergence"] < 0.05 and abs(out["perplexity"] / out["perplexity_fp32"] - 1) < 0.05
    answer = load_model(out["name"], backend="llama_cpp").generate(
        "The capital of France is", temperature=0, max_new_tokens=8
    )
    assert "Paris" in answer.text
    facts = measure_perf(out["name"], new_tokens=8)
    assert facts["backend"] == "llama_cpp" and facts["tokens_per_s"] > 0
