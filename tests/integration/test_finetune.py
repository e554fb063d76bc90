"""`lmf finetune` on the packaged SmolLM2-135M-Instruct: a few LoRA steps, reload, export to GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfoundry.cli.main import main

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "finetune" / "lora.yaml"


def test_lora_steps_on_the_packaged_model_then_merge_and_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    from lmfoundry.finetune.data.synthetic_dialogsum import make_dialogsum_synthetic
    from lmfoundry.finetune.train.artifacts import load_tuned
    from lmfoundry.models.load import load_hf_model

    make_dialogsum_synthetic(n=60, seed=0)
    run = tmp_path / "run"
    overrides = [
        "training.max_steps=2",
        "training.batch_size=2",
        "training.eval_every=0",
        "training.warmup_steps=0",
        "training.lr=0.001",
        "data.eval_limit=2",
        "data.max_length=320",
        f"output_dir={run}",
    ]
    assert main(["finetune", str(CONFIG), *overrides, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["eval_loss"] < summary["initial_eval_loss"]
    assert summary["estimated_peak_bytes"] and summary["peak_rss_bytes"]

    tuned, tokenizer, _ = load_tuned(run)
    assert main(["adapters", "merge", str(run), "--name", "smol-tuned"]) == 0
    merged, _ = load_hf_model("smol-tuned")
    ids = torch.tensor([tokenizer("#Person1#: Hi! #Person2#: Hello, Anna.")["input_ids"]])
    with torch.no_grad():
        expected = tuned(input_ids=ids).logits
        torch.testing.assert_close(merged(input_ids=ids).logits, expected, atol=1e-3, rtol=1e-3)

    out = tmp_path / "smol.gguf"
    assert main(["export", "gguf", "smol-tuned", "--outtype", "f32", "--out", str(out)]) == 0
    assert gguf.GGUFReader(str(out)).fields["tokenizer.ggml.pre"].contents() == "smollm"
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=out.name)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, expected, atol=1e-3, rtol=1e-3)
