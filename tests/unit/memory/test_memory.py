"""Memory planner: each formula against an independent count on the tiny models, the CLI, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfoundry.cli.main import main
from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.memory import planner
from lmfoundry.memory.planner import Workload, estimate, facts_from_config, model_facts


def _config(model) -> dict:
    return model.config.to_dict()


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [("llama", {}), ("qwen2", {}), ("llama", {"tie_word_embeddings": True}), ("llama", {"head_dim": 32})],
)
def test_param_count_from_config_matches_torch(kind: str, overrides: dict) -> None:
    from tiny import build_model

    model = build_model(kind, **overrides)
    expected = sum(p.numel() for p in model.parameters())  # tied weights are one Parameter
    assert planner.config_param_count(_config(model)) == expected


def test_model_facts_read_files_without_loading(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    facts = model_facts(str(tiny_llama_dir))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert facts.n_params == sum(p.numel() for p in model.parameters())
    assert facts.checkpoint_bytes == (tiny_llama_dir / "model.safetensors").stat().st_size
    assert facts.tokenizer_bytes == (tiny_llama_dir / "tokenizer.json").stat().st_size
    linear = sum(
        m.weight.numel()
        for n, m in model.named_modules()
        if n.startswith("model.layers") and hasattr(m, "in_features")
    )
    assert facts.block_linear_params == linear


@pytest.mark.parametrize(("batch", "seq_len"), [(1, 7), (3, 20)])
def test_kv_cache_matches_a_real_dynamic_cache(tiny_llama_dir: Path, batch: int, seq_len: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    with torch.inference_mode():
        out = model(input_ids=torch.randint(5, 300, (batch, seq_len)), use_cache=True)
    cache = out.past_key_values
    actual = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    plan = estimate(model_facts(str(tiny_llama_dir)), Workload(seq_len=seq_len, batch=batch, new_tokens=0))
    assert plan.components["kv_cache"] == actual


def _saved_activation_bytes(model, batch: int, seq_len: int, vocab: int) -> tuple[int, int]:
    """Bytes autograd saves for backward (parameters excluded), split into (T x V) logits and the rest."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, tuple[int, tuple[int, ...]]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in params:
            seen.setdefault(key, (t.untyped_storage().nbytes(), tuple(t.shape)))
        return t

    ids = torch.randint(5, vocab - 1, (batch, seq_len))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids)
    logits = sum(
        n for n, shape in seen.values() if shape[-1:] == (vocab,) and n >= batch * seq_len * vocab * 4
    )
    return logits, sum(n for n, _ in seen.values()) - logits


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_training_activations_match_what_autograd_saves(tiny_llama_dir: Path, mode: str) -> None:
    from transformers import AutoModelForCausalLM

    from lmfoundry.memory.measure import wrap_lora

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    if mode == "lora":
        model = wrap_lora(model, 4)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    model.train()
    facts = model_facts(str(tiny_llama_dir))
    batch, seq_len = 2, 24
    logits, layers = _saved_activation_bytes(model, batch, seq_len, facts.vocab_size)
    plan = estimate(facts, Workload(mode=mode, seq_len=seq_len, batch=batch, lora_rank=4))
    # not modelled: token ids, labels, rope tables, masks (a few values per token, not per layer)
    small = batch * seq_len * 32 * 4
    assert abs(plan.components["activations"] - layers) <= small
    # one fp32 (T x V) tensor is saved (log-softmax); the peak adds its grad and the logits' grad
    assert plan.components["logits"] == 3 * logits


def test_lora_params_match_peft(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from lmfoundry.memory.measure import wrap_lora

    model = wrap_lora(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), 8)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert planner.lora_params(model_facts(str(tiny_llama_dir)), 8) == trainable


def test_quantized_weights_match_quantize_model(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from lmfoundry.quantize.modules import quantize_model

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    report = quantize_model(model, "nf4")
    facts = model_facts(str(tiny_llama_dir))
    assert report.params == facts.block_linear_params
    plan = estimate(facts, Workload(mode="inference", quant="nf4"))
    rest = sum(p.nbytes for p in model.parameters())  # what quantize_model left as fp32 parameters
    assert plan.components["weights"] == rest + report.bytes
    assert plan.components["load_transient"] == facts.checkpoint_bytes


def test_training_memory_terms_and_rule_of_thumb() -> None:
    from tiny import build_model

    facts = facts_from_config(_config(build_model("llama")))
    full = estimate(facts, Workload(mode="full", seq_len=8))
    assert full.components["gradients"] == facts.n_params * 4
    assert full.components["optimizer"] == facts.n_params * 8
    assert full.rule_of_thumb_bytes == 24 * facts.n_params
    half = estimate(facts, Workload(mode="lora", dtype="bfloat16", seq_len=8))
    assert half.components["weights"] == facts.n_params * 2
    assert "kv_cache" not in full.components and "gradients" not in estimate(facts, Workload()).components
    assert full.total_bytes == sum(full.components.values())


def test_allocator_retention_follows_the_environment() -> None:
    from tiny import build_model

    facts = facts_from_config(_config(build_model("llama")))
    workload = Workload(mode="lora", seq_len=64, batch=2)
    default = estimate(facts, workload, environ={})
    tuned = estimate(facts, workload, environ={"MALLOC_MMAP_THRESHOLD_": "65536"})
    assert tuned.components["allocator_retention"] == 0
    working = default.components["activations"] + default.components["logits"]
    assert default.components["allocator_retention"] == int(planner.ALLOCATOR_SLACK["train"] * working)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "pretrain"}, "unknown mode"),
        ({"seq_len": -1}, "seq-len must be a positive"),
        ({"batch": 0}, "batch must be a positive"),
        ({"dtype": "int4"}, "unknown dtype"),
        ({"quant": "q2"}, "unknown quantization"),
        ({"mode": "lora", "quant": "nf4"}, "--mode qlora"),
        ({"new_tokens": -2}, "new-tokens"),
    ],
)
def test_bad_workloads_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Workload(**kwargs)


def test_config_without_shapes_is_a_clear_error() -> None:
    with pytest.raises(LmfError, match="decoder-only"):
        facts_from_config({"model_type": "bert"})


def test_cli_json_shape(tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["estimate", str(tiny_llama_dir), "--mode", "lora", "--seq-len", "32", "--batch", "2", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total_bytes"] == sum(result["components"].values())
    assert {"weights", "gradients", "optimizer", "activations", "logits", "runtime"} <= set(
        result["components"]
    )
    assert set(result["formulas"]) == set(result["components"])
    assert result["workload"]["seq_len"] == 32 and "measured_peak_bytes" not in result


def test_cli_text_and_errors(tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", str(tiny_llama_dir), "--mode", "qlora"]) == 0
    out = capsys.readouterr().out
    assert "kv_cache" not in out and "optimizer" in out and "total" in out
    assert main(["estimate", str(tiny_llama_dir), "--seq-len", "-5"]) == 1
    assert "seq-len must be a positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["estimate", str(tiny_llama_dir), "--mode", "pretrain"])
    assert main(["estimate", "no-such-model-xyz"]) == 1


def test_measure_runs_in_a_subprocess(tiny_llama_dir: Path) -> None:
    result = planner.plan(str(tiny_llama_dir), Workload(seq_len=16, new_tokens=2), measure_peak=True)
    measured = result["measured_peak_bytes"]
    # a fresh interpreter with torch imported is hundreds of MB; the tiny model adds little
    assert 150 * 2**20 < measured < 2 * 2**30
    assert result["ratio"] == pytest.approx(result["total_bytes"] / measured, rel=1e-3)
    phases = result["measure"]["phases"]
    assert phases["imports"]["peak"] <= phases["load"]["peak"] <= phases["workload"]["peak"] <= measured
    assert measured - phases["workload"]["peak"] < 16 * 2**20  # read moments later, at exit


def test_measure_failures_are_lmf_errors(tiny_llama_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="fp32"):
        planner.measure(str(tiny_llama_dir), Workload(dtype="bfloat16"))
    with pytest.raises(LmfError, match="measured workload failed.*no-such-model"):
        planner.measure("no-such-model", Workload(seq_len=4))


def test_peak_rss_is_this_process(tmp_path: Path) -> None:
    from lmfoundry.rss import current_rss_bytes, peak_rss_bytes

    assert 0 < current_rss_bytes() <= peak_rss_bytes()
