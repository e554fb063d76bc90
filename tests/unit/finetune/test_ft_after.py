"""After training: merge into the store, export GGUF, and check adapter == merged == GGUF."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.finetune.config import finetune_config_from_dict

IDS = [[5, 17, 42, 99, 7, 3, 60, 61, 120, 200]]


def _train(ft_config: Callable[..., dict[str, Any]], method: str = "lora") -> str:
    from lmfoundry.finetune.run import run_finetune

    config = finetune_config_from_dict(
        ft_config(method, training={"max_steps": 3, "lr": 3e-2, "eval_every": 0})
    )
    return str(run_finetune(config, progress=False)["run_dir"])


def _logits(model: Any) -> Any:
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor(IDS)).logits


def test_merge_writes_a_store_model_with_the_adapter_folded_in(
    ft_config: Callable[..., dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from lmfoundry.finetune.train.artifacts import load_tuned
    from lmfoundry.models import store
    from lmfoundry.models.load import load_hf_model

    run = _train(ft_config)
    assert main(["adapters", "merge", run, "--name", "tuned", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "tuned"
    merged, _ = load_hf_model("tuned")
    tuned, _, info = load_tuned(run)
    torch.testing.assert_close(_logits(merged), _logits(tuned), atol=1e-4, rtol=1e-4)
    assert store.read_manifest("tuned").base == info.base_model
    assert not any("lora" in name for name, _ in merged.named_parameters())

    assert main(["adapters", "merge", run, "--name", "tuned"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["adapters", "merge", run, "--name", "tuned", "--force"]) == 0


@pytest.mark.parametrize("method", ["qlora", "ia3"])
def test_merge_other_weight_methods(method: str, ft_config: Callable[..., dict[str, Any]]) -> None:
    import torch

    from lmfoundry.finetune.export.merge import merged_model
    from lmfoundry.finetune.train.artifacts import load_tuned

    run = _train(ft_config, method)
    merged, _, _ = merged_model(run)
    tuned, _, _ = load_tuned(run)
    torch.testing.assert_close(_logits(merged), _logits(tuned), atol=1e-4, rtol=1e-4)


def test_prompt_methods_cannot_be_merged(
    ft_config: Callable[..., dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    run = _train(ft_config, "prompt")
    assert main(["adapters", "merge", run, "--name", "nope"]) == 1
    assert "cannot be merged" in capsys.readouterr().err


def test_merge_rejects_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["adapters", "merge", str(tmp_path), "--name", "x"]) == 1
    assert "not a fine-tuning run" in capsys.readouterr().err


@pytest.mark.parametrize(("outtype", "tol"), [("f32", 1e-4), ("f16", 2e-2)])
def test_export_gguf_reloads_in_transformers_with_the_same_logits(
    outtype: str,
    tol: float,
    ft_config: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmfoundry.finetune.export.merge import merged_model

    run = _train(ft_config)
    out = tmp_path / f"m-{outtype}.gguf"
    assert main(["export", "gguf", run, "--outtype", outtype, "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(out)
    merged, tokenizer, _ = merged_model(run)

    reader = gguf.GGUFReader(str(out))
    fields = reader.fields
    assert fields["general.architecture"].contents() == "llama"
    assert len(fields["tokenizer.ggml.tokens"].data) == merged.config.vocab_size
    assert fields["tokenizer.chat_template"].contents() == tokenizer.chat_template
    assert fields["tokenizer.ggml.eos_token_id"].contents() == tokenizer.eos_token_id
    weights = {t.name: t for t in reader.tensors}
    assert weights["blk.0.attn_q.weight"].tensor_type.name == outtype.upper()
    assert weights["blk.0.attn_norm.weight"].tensor_type.name == "F32"

    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=out.name)
    torch.testing.assert_close(_logits(reloaded), _logits(merged), atol=tol, rtol=tol)
    gguf_tokenizer = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=out.name)
    text = "Hello, how are you? Person2: fine."
    assert gguf_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_export_store_model_records_the_gguf_in_its_manifest(
    tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmfoundry.models import store

    store.pull(str(tiny_llama_dir), "tiny")
    assert main(["export", "gguf", "tiny", "--json"]) == 0
    path = Path(json.loads(capsys.readouterr().out)["path"])
    assert path.parent == store.entry_dir("tiny") and path.name == "model-f16.gguf"
    assert store.read_manifest("tiny").gguf == str(path)


def test_export_refuses_unsupported_architectures(tmp_path: Path) -> None:
    from lmfoundry.errors import LmfError
    from lmfoundry.models.gguf_writer import write_gguf
    from tiny import build_model, build_tokenizer

    model = build_model("llama", vocab_size=384)
    model.config.architectures = ["GPT2LMHeadModel"]
    with pytest.raises(LmfError, match="supports"):
        write_gguf(model, build_tokenizer(), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_agreement_is_the_common_prefix_share() -> None:
    from lmfoundry.finetune.export.check import agreement

    assert agreement([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert agreement([1, 2, 3, 4], [1, 2, 9, 4]) == 0.5
    assert agreement([1, 2], [1, 2, 3, 4]) == 0.5
    assert agreement([], []) == 1.0


def test_check_passes_for_a_correct_export(
    ft_config: Callable[..., dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("llama_cpp")
    run = _train(ft_config)
    code = main(["adapters", "check", run, "--json", "--max-new-tokens", "8"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"], report
    assert report["agreement"] == 1.0 and report["max_logit_diff"] < 1e-2
    assert report["gguf_backend"] == "llama_cpp"
    # the adapter as a llama.cpp GGUF LoRA on the unmerged base was checked too
    assert all(p["lora_gguf_max_logit_diff"] < 1e-2 for p in report["prompts"])
    assert all(p["lora_gguf_agreement"] == 1.0 for p in report["prompts"])


def test_check_fails_loudly_when_the_export_is_wrong(
    ft_config: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Fault injection: an exporter that forgets the rotary permutation must be caught."""
    pytest.importorskip("llama_cpp")
    from lmfoundry.models import gguf_writer

    run = _train(ft_config)
    broken = gguf_writer.ArchSpec("llama", False, "smollm")
    monkeypatch.setitem(gguf_writer.ARCHS, "LlamaForCausalLM", broken)
    assert main(["adapters", "check", run, "--max-new-tokens", "8"]) == 1
    assert "MISMATCH" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_lora_gguf_adapter_on_llama_cpp_matches_peft(kind: str, tmp_path: Path) -> None:
    """Base GGUF + GGUF LoRA on llama.cpp gives peft's logits (non-identity LoRA init)."""
    pytest.importorskip("llama_cpp")
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model

    from lmfoundry.finetune.export.gguf_lora import write_lora_gguf
    from lmfoundry.generate.llamacpp_backend import LlamaCppBackend
    from lmfoundry.models.gguf_writer import write_gguf
    from tiny import build_model, build_tokenizer

    tokenizer, base = build_tokenizer(), build_model(kind)
    base.config.architectures = [type(base).__name__]
    write_gguf(base, tokenizer, tmp_path / "base.gguf", outtype="f32")
    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(base, config)
    write_lora_gguf(model, tmp_path / "lora.gguf")
    ids = tokenizer("The quick brown fox jumps")["input_ids"]
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
        with model.disable_adapter():
            plain = model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
    llm = LlamaCppBackend(tmp_path / "base.gguf", n_ctx=256, lora_path=tmp_path / "lora.gguf").llm
    llm.eval(ids)
    got = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()
    llm.close()
    assert np.abs(plain - expected).max() > 0.1  # the adapter changes the output ...
    assert np.abs(got - expected).max() < 1e-3  # ... and llama.cpp applies it exactly


def test_export_lora_cli_and_refusals(
    ft_config: Callable[..., dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import gguf

    run = _train(ft_config)
    out = tmp_path / "a.gguf"
    assert main(["export", "gguf", run, "--lora", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(out)
    reader = gguf.GGUFReader(str(out))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.lora.alpha"].contents() == pytest.approx(16.0)  # peft default alpha 16
    assert any(t.name.endswith(".lora_b") for t in reader.tensors)
    ia3 = _train(ft_config, "ia3")
    assert main(["export", "gguf", ia3, "--lora", "--out", str(tmp_path / "b.gguf")]) == 1
    assert "LoRA only" in capsys.readouterr().err and not (tmp_path / "b.gguf").exists()
