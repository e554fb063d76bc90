"""Quantized input embeddings and output heads (`quantize_model(..., embeddings=...)`) on tiny models.

Expected values come from bitsandbytes (nf4/fp4, the reference library) or from an independent
numpy computation (int8), never from our own dequantization.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.quantize.embedding import quant_embedding_class
from lmfoundry.quantize.linear import quant_linear_class
from lmfoundry.quantize.modules import dequantize_model, load_quantized, quantize_model, save_quantized
from tiny import build_model

QuantEmbedding, QuantLinear = quant_embedding_class(), quant_linear_class()

IDS = torch.tensor([[5, 17, 99, 200, 3, 42, 7, 300, 11, 64]])


def _logits(model: torch.nn.Module, ids: torch.Tensor = IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _int8_reference(w: torch.Tensor, block: int) -> np.ndarray:
    """Blockwise symmetric int8 in float64 numpy: round(x * 127 / absmax) * absmax / 127."""
    flat = w.detach().double().numpy().reshape(-1, block)
    absmax = np.abs(flat).max(axis=1, keepdims=True)
    safe = np.where(absmax == 0, 1.0, absmax)
    return (np.round(flat / safe * 127) * absmax / 127).reshape(w.shape)


def test_int8_rows_match_independent_reference() -> None:
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(50, 128)
    embedding.weight.data[3] = 0.0  # an all-zero row (both of its blocks)
    layer = QuantEmbedding.from_embedding(embedding, "int8", block_size=64)
    ref = _int8_reference(embedding.weight, 64)
    ids = torch.tensor([[3, 0, 49], [7, 7, 12]])
    out = layer(ids)
    assert out.shape == (2, 3, 128) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref[ids.numpy()], atol=1e-6, rtol=0)
    assert layer.quant_bytes() == 50 * 128 + 4 * 50 * 128 // 64


@pytest.mark.parametrize(("method", "double_quant"), [("nf4", False), ("fp4", False), ("nf4", True)])
def test_4bit_rows_match_bitsandbytes(method: str, double_quant: bool) -> None:
    bnb_f = pytest.importorskip("bitsandbytes.functional")
    torch.manual_seed(1)
    embedding = torch.nn.Embedding(300, 128)
    embedding.weight.data *= torch.linspace(0.01, 0.3, 300).unsqueeze(1)
    layer = QuantEmbedding.from_embedding(embedding, method, block_size=64, double_quant=double_quant)
    packed, state = bnb_f.quantize_4bit(
        embedding.weight.detach(), blocksize=64, quant_type=method, compress_statistics=double_quant
    )
    ref = bnb_f.dequantize_4bit(packed, state)
    ids = torch.tensor([0, 299, 150, 150, 17])
    assert torch.allclose(layer(ids), ref[ids], atol=1e-6, rtol=0)


@pytest.mark.parametrize("tie", [True, False])
def test_head_logits_match_dequantized_weight(tie: bool) -> None:
    model = build_model("llama", tie_word_embeddings=tie)
    fp32_head = model.lm_head.weight.detach().clone()
    report = quantize_model(model, "nf4", embeddings="int8")  # single quant: fp32 absmax as in the reference
    assert report.embeddings == "int8" and report.tied_head is tie
    assert report.embedding_params == fp32_head.numel() * (1 if tie else 2)
    assert isinstance(model.model.embed_tokens, QuantEmbedding) and isinstance(model.lm_head, QuantLinear)
    assert (model.lm_head.qweight is model.model.embed_tokens.qweight) is tie
    hidden = torch.randn(3, 64)
    with torch.no_grad():
        logits = model.lm_head(hidden)
    expected = hidden.double().numpy() @ _int8_reference(fp32_head, 64).T
    np.testing.assert_allclose(logits.numpy(), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("tie", [True, False])
def test_int8_embeddings_keep_logits_close(tie: bool) -> None:
    plain = build_model("qwen2", tie_word_embeddings=tie)
    quantize_model(plain, "nf4", double_quant=True)
    with_emb = build_model("qwen2", tie_word_embeddings=tie)
    fp32 = _logits(with_emb)
    quantize_model(with_emb, "nf4", double_quant=True, embeddings="int8")
    # int8 embeddings add little on top of the nf4 linears' own error (~0.1)
    assert _rel(_logits(with_emb), _logits(plain)) < 0.03
    assert _rel(_logits(with_emb), fp32) < 0.2


@pytest.mark.parametrize(("tie", "method"), [(True, "nf4"), (False, "int8")])
def test_save_load_roundtrip(tie: bool, method: str, tmp_path: Path) -> None:
    from safetensors import safe_open

    model = build_model("llama", tie_word_embeddings=tie)
    report = quantize_model(model, "nf4", double_quant=True, embeddings=method)
    expected = _logits(model)
    out = save_quantized(model, tmp_path / "q")
    meta = json.loads((out / "quantization.json").read_text())
    assert list(meta["embeddings"]) == ["model.embed_tokens"]
    assert meta["embeddings"]["model.embed_tokens"]["method"] == method
    assert meta["tied_heads"] == ({"lm_head": "model.embed_tokens"} if tie else {})
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        keys = set(handle.keys())
    assert "model.embed_tokens.qweight" in keys and "model.embed_tokens.weight" not in keys
    assert ("lm_head.qweight" in keys) is not tie  # a tied head's codes are stored once
    loaded = load_quantized(out)
    assert (loaded.lm_head.qweight is loaded.model.embed_tokens.qweight) is tie
    assert not any(p.device.type == "meta" for p in [*loaded.parameters(), *loaded.buffers()])
    assert sum(isinstance(m, QuantLinear) for m in loaded.modules()) == report.layers + 1
    assert torch.equal(_logits(loaded), expected)
    generated = loaded.generate(IDS, max_new_tokens=4, do_sample=False, pad_token_id=3)
    assert generated.shape == (1, IDS.shape[1] + 4)


def test_dequantize_model_restores_tied_embedding() -> None:
    model = build_model("llama", tie_word_embeddings=True)
    quantize_model(model, "int8", embeddings="int8")
    quantized = _logits(model)
    assert dequantize_model(model) == 14 + 2
    assert type(model.model.embed_tokens) is torch.nn.Embedding
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert torch.allclose(_logits(model), quantized, atol=1e-5)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="block size must divide the width"):
        quantize_model(build_model("llama"), "nf4", block_size=48, embeddings="int8")
    with pytest.raises(InvalidInputError, match="unknown quantization method"):
        quantize_model(build_model("llama"), "nf4", embeddings="q8")

    class Scaled(torch.nn.Embedding):
        pass

    with pytest.raises(InvalidInputError, match="only a plain torch.nn.Embedding"):
        QuantEmbedding.from_embedding(Scaled(10, 64))
    layer = QuantEmbedding.from_embedding(torch.nn.Embedding(10, 64))
    with pytest.raises(IndexError, match="out of range"):
        layer(torch.tensor([10]))

    model = build_model("llama", tie_word_embeddings=True)
    quantize_model(model, "nf4", embeddings="nf4")
    out = save_quantized(model, tmp_path / "q")
    meta = json.loads((out / "quantization.json").read_text())
    meta["tied_heads"] = {"lm_head": "model.missing"}
    (out / "quantization.json").write_text(json.dumps(meta))
    with pytest.raises(LmfError, match="does not list"):
        load_quantized(out)


def test_store_entry_with_embeddings_generates(tiny_llama_dir: Path) -> None:
    import lmfoundry
    from lmfoundry.models import store
    from lmfoundry.quantize.store_entry import create_quantized

    store.pull(str(tiny_llama_dir), "tiny")
    created = create_quantized("tiny", "nf4", double_quant=True, embeddings="int8")
    assert created["name"] == "tiny-nf4-dq-emb-int8"
    quant = store.read_manifest(created["name"]).quantization
    assert quant is not None and quant["embeddings"] == "int8"
    assert quant["embedding_bits_per_param"] == pytest.approx(8 * (1 + 1 / 64 + 4 / (64 * 256)), abs=0.01)
    plain = create_quantized("tiny", "nf4", double_quant=True)
    assert created["size_bytes"] < plain["size_bytes"]
    result = lmfoundry.load(created["name"]).generate("hello", temperature=0, max_new_tokens=4)
    assert result.completion_tokens >= 1
    with pytest.raises(InvalidInputError, match="--quantize-embeddings and --gptq apply to nf4/fp4/int8"):
        create_quantized("tiny", "gguf-q8_0", embeddings="int8")
    with pytest.raises(InvalidInputError, match="unknown embedding quantization method"):
        create_quantized("tiny", "nf4", embeddings="fp8")


def test_cli_flag(tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lmfoundry.cli.main import main
    from lmfoundry.models import store

    store.pull(str(tiny_llama_dir), "tiny")
    assert (
        main(["quantize", "tiny", "--method", "int8", "--quantize-embeddings", "--json", "--no-track"]) == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["name"] == "tiny-int8-emb-int8"
    assert summary["quantization"]["embeddings"] == "int8"
    argv = ["quantize", "tiny", "--method", "nf4", "--embedding-method", "nf4", "--json", "--no-track"]
    assert main(argv) == 0  # the method alone implies --quantize-embeddings
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["name"] == "tiny-nf4-emb-nf4" and summary["quantization"]["tied_head"] is False


def test_qlora_step_with_quantized_embeddings() -> None:
    peft = pytest.importorskip("peft")
    from lmfoundry.quantize.modules import register_lora_layers

    torch.manual_seed(0)
    model = build_model("llama", tie_word_embeddings=True)
    quantize_model(model, "nf4", double_quant=True, embeddings="int8")
    config = register_lora_layers(
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    )
    config.init_lora_weights = False
    lora = peft.get_peft_model(model, config)
    ids = torch.randint(0, 384, (2, 12), generator=torch.Generator().manual_seed(1))
    loss = lora(input_ids=ids, labels=ids).loss
    loss.backward()
    trainable = [p for p in lora.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
