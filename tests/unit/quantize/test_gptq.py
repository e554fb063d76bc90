"""GPTQ: same codes as round-to-nearest when inputs are uncorrelated, smaller output error when they are not."""

from __future__ import annotations

import pytest
import torch

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.quantize import blockwise as qb
from lmfoundry.quantize.gptq import (
    Calibration,
    calibration_sequences,
    decoder_blocks,
    default_calibration_text,
    gptq_layer,
    inverse_hessian_factor,
    stored_codes,
)
from lmfoundry.quantize.heldout import heldout_text
from lmfoundry.quantize.linear import dequantize_weight, quant_linear_class
from lmfoundry.quantize.modules import load_quantized, quantize_model, save_quantized
from tiny import build_model, build_tokenizer

QuantLinear = quant_linear_class()


def _rtn(weight: torch.Tensor, method: str, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if method == "int8":
        return qb.quantize_int8(weight, block_size)
    return qb.quantize_4bit(weight, method, block_size)


def _correlated_inputs(rows: int, width: int, seed: int = 0) -> torch.Tensor:
    """Inputs on a few strong directions plus noise, like a transformer's hidden states."""
    gen = torch.Generator().manual_seed(seed)
    basis = torch.randn(8, width, generator=gen) * 3
    return torch.randn(rows, 8, generator=gen) @ basis + 0.3 * torch.randn(rows, width, generator=gen)


def _dequantized(
    codes: torch.Tensor, absmax: torch.Tensor, shape: tuple[int, ...], method: str, block: int
) -> torch.Tensor:
    if method == "int8":
        return qb.dequantize_int8(codes, absmax, shape, block)
    return qb.dequantize_4bit(codes, absmax, shape, method, block)


@pytest.mark.parametrize("method", ["nf4", "fp4", "int8"])
def test_uncorrelated_inputs_give_round_to_nearest(method: str) -> None:
    """With H = I no error is worth moving: GPTQ must reproduce RTN (bitsandbytes' codes) exactly."""
    weight = torch.randn(24, 128, generator=torch.Generator().manual_seed(1))
    codes, absmax, values = gptq_layer(weight, torch.eye(128), method, 32, act_order=False)
    rtn_codes, rtn_absmax = _rtn(weight, method, 32)
    assert torch.equal(stored_codes(codes, method), rtn_codes)
    assert torch.allclose(absmax, rtn_absmax)
    assert torch.allclose(values, _dequantized(rtn_codes, rtn_absmax, (24, 128), method, 32), atol=1e-6)


@pytest.mark.parametrize("method", ["nf4", "fp4", "int8"])
def test_act_order_scales_round_to_nearest_with_less_error(method: str) -> None:
    """With act order the block scales are searched first; with H = I each weight then takes its nearest code."""
    weight = torch.randn(24, 128, generator=torch.Generator().manual_seed(1))
    codes, absmax, values = gptq_layer(weight, torch.eye(128), method, 32, act_order=True)
    rtn_codes, rtn_absmax = _rtn(weight, method, 32)
    assert (absmax <= rtn_absmax).all()
    assert torch.allclose(
        values, _dequantized(stored_codes(codes, method), absmax, (24, 128), method, 32), atol=1e-6
    )
    rtn = _dequantized(rtn_codes, rtn_absmax, (24, 128), method, 32)
    if method == "int8":  # 255 levels: clipping never pays, the search keeps the absmax
        assert torch.equal(absmax, rtn_absmax) and torch.allclose(values, rtn)
        return
    unit = (weight.reshape(-1, 32) / absmax[:, None]).clamp(-1, 1).reshape(-1)
    assert torch.equal(codes.reshape(-1), qb.nearest_code(unit, qb.codebook(method)))
    assert (absmax < rtn_absmax).any()
    assert (weight - values).norm() < (weight - rtn).norm()


@pytest.mark.parametrize("method", ["nf4", "int8"])
@pytest.mark.parametrize("act_order", [False, True])
def test_output_error_smaller_than_round_to_nearest(method: str, act_order: bool) -> None:
    weight = torch.randn(48, 256, generator=torch.Generator().manual_seed(2))
    x = _correlated_inputs(1024, 256)
    _codes, _absmax, values = gptq_layer(weight, x.t() @ x, method, 64, act_order=act_order)
    rtn_codes, rtn_absmax = _rtn(weight, method, 64)
    rtn = _dequantized(rtn_codes, rtn_absmax, tuple(weight.shape), method, 64)
    gptq_error = (x @ (weight - values).t()).norm()
    rtn_error = (x @ (weight - rtn).t()).norm()
    assert gptq_error < 0.7 * rtn_error


@pytest.mark.parametrize("double_quant", [False, True])
def test_layer_built_from_gptq_codes_holds_its_values(double_quant: bool) -> None:
    linear = torch.nn.Linear(128, 16, bias=True)
    x = _correlated_inputs(256, 128, seed=3)
    codes, absmax, values = gptq_layer(linear.weight, x.t() @ x, "nf4", 64, act_order=True)
    layer = QuantLinear.from_linear(linear, "nf4", 64, double_quant, (stored_codes(codes, "nf4"), absmax))
    tolerance = 0.02 * float(values.abs().max()) if double_quant else 1e-6  # dq rounds the absmax
    assert torch.allclose(dequantize_weight(layer), values, atol=tolerance)
    assert torch.equal(layer.bias.detach(), linear.bias.detach())


def test_layer_rejects_width_not_multiple_of_block() -> None:
    with pytest.raises(InvalidInputError, match="multiple of the block size"):
        gptq_layer(torch.randn(4, 96), torch.eye(96), "nf4", 64)


def test_gram_matrix_that_damping_cannot_fix_is_an_error() -> None:
    with pytest.raises(LmfError, match="not positive definite"):
        inverse_hessian_factor(-torch.eye(8))


def test_zero_inputs_are_rounded_not_an_error() -> None:
    gram = torch.diag(torch.tensor([4.0, 0.0, 1.0, 0.0]))
    factor = inverse_hessian_factor(gram)
    assert torch.isfinite(factor).all()


def test_calibration_sequences_spread_over_the_text() -> None:
    tokenizer = build_tokenizer()
    text = " ".join(f"word{i % 50}" for i in range(400))
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    sequences = calibration_sequences(tokenizer, text, 4, 16)
    assert len(sequences) == 4 and all(len(s) == 16 for s in sequences)
    stride = len(ids) // 4
    assert sequences[3] == ids[3 * stride : 3 * stride + 16]
    assert len(calibration_sequences(tokenizer, text, 10_000, 16)) == len(ids) // 16
    with pytest.raises(InvalidInputError, match="fewer than one sequence"):
        calibration_sequences(tokenizer, "word1 word2", 4, 512)
    with pytest.raises(InvalidInputError, match="at least 1 sequence"):
        calibration_sequences(tokenizer, text, 0, 16)


def test_default_calibration_text_shares_nothing_with_the_held_out_text() -> None:
    """Topics overlap (e.g. "compound" repeats "if"), so whole held-out paragraphs must be absent."""
    text = default_calibration_text()
    assert len(text) > 100_000
    paragraphs = [p.strip() for p in heldout_text().split("\n\n") if len(p.strip()) >= 80]
    assert len(paragraphs) > 500
    assert [p for p in paragraphs if p in text] == []


def _calibration(seed: int, count: int = 8, length: int = 48) -> Calibration:
    gen = torch.Generator().manual_seed(seed)
    return Calibration([torch.randint(4, 384, (length,), generator=gen).tolist() for _ in range(count)])


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_model_with_gptq_is_closer_to_fp32_than_round_to_nearest(kind: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Tiny random models: GPTQ's logits must track fp32 better than round to nearest's."""
    ids = torch.tensor(_calibration(7, 1, 64).sequences)
    reference = build_model(kind)
    with torch.no_grad():
        ref_logits = reference(ids).logits
    errors = {}
    threads = torch.get_num_threads()
    for name, calibration in (("rtn", None), ("gptq", _calibration(5, 16, 64))):
        model = build_model(kind)
        report = quantize_model(model, "nf4", double_quant=True, block_size=32, calibration=calibration)
        assert torch.get_num_threads() == threads  # the one-thread sweep gives the threads back
        with torch.no_grad():
            errors[name] = float((model(ids).logits - ref_logits).norm())
        if calibration is not None:
            assert report.calibration is not None and report.calibration["layers"] == 2 * 7
            assert report.calibration["tokens"] == 16 * 64
            save_quantized(model, tmp_path / "m")
            loaded = load_quantized(tmp_path / "m")
            with torch.no_grad():
                assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-5)
    assert errors["gptq"] < errors["rtn"]


def test_model_without_decoder_stack_is_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(64, 64))
    with pytest.raises(InvalidInputError, match="num_hidden_layers"):
        decoder_blocks(model)
    with pytest.raises(InvalidInputError, match="at least one calibration sequence"):
        quantize_model(build_model("llama"), "nf4", calibration=Calibration([]))
