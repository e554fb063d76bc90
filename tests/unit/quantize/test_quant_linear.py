"""QuantLinear: forward equals a matmul with the dequantized weight, in bands, with gradients; lazy torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lmfoundry.errors import InvalidInputError
from lmfoundry.quantize import blockwise as qb
from lmfoundry.quantize import linear as ql
from lmfoundry.quantize.linear import quant_linear_class

QuantLinear = quant_linear_class()


def _linear(in_f: int, out_f: int, bias: bool = True, seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(in_f, out_f, bias=bias)


@pytest.mark.parametrize("method", ["nf4", "fp4", "int8"])
@pytest.mark.parametrize("double_quant", [False, True])
def test_weight_matches_tensor_functions(method: str, double_quant: bool) -> None:
    lin = _linear(96, 40)
    layer = QuantLinear.from_linear(lin, method, 64, double_quant)
    if method == "int8":
        codes, absmax = qb.quantize_int8(lin.weight, 64)
    else:
        codes, absmax = qb.quantize_4bit(lin.weight, method, 64)
    assert torch.equal(layer.qweight, codes)
    if double_quant:
        absmax = qb.double_dequantize(qb.double_quantize(absmax))
    if method == "int8":
        expected = qb.dequantize_int8(codes, absmax, (40, 96), 64)
    else:
        expected = qb.dequantize_4bit(codes, absmax, (40, 96), method, 64)
    assert torch.allclose(layer.dequantize_weight(), expected, atol=1e-7, rtol=0)


@pytest.mark.parametrize(("in_f", "out_f"), [(64, 48), (100, 30), (2048, 600)])
@pytest.mark.parametrize("shape", [(1, 1), (2, 7)])
def test_forward_prefill_and_decode(
    in_f: int, out_f: int, shape: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # small bands so several are used, including a partial last band and blocks that straddle rows
    monkeypatch.setattr(ql, "CHUNK_ELEMENTS", 4096)
    lin = _linear(in_f, out_f)
    layer = QuantLinear.from_linear(lin, "nf4", 64, double_quant=True)
    x = torch.randn(*shape, in_f)
    expected = torch.nn.functional.linear(x, layer.dequantize_weight(), lin.bias)
    with torch.no_grad():
        got = layer(x)
    assert got.shape == (*shape, out_f)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_bands_end_on_block_boundaries() -> None:
    for in_f in (64, 100, 96, 8192, 30):
        rows = ql.rows_per_chunk(in_f, 64)
        assert rows >= 1 and rows * in_f % 64 == 0


def test_backward_matches_reference_and_bias_stays_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ql, "CHUNK_ELEMENTS", 2048)
    lin = _linear(128, 80)
    layer = QuantLinear.from_linear(lin, "nf4", 64)
    assert layer.bias.dtype == torch.float32
    x = torch.randn(3, 128, requires_grad=True)
    layer(x).pow(2).sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    torch.nn.functional.linear(x_ref, layer.dequantize_weight(), layer.bias.detach()).pow(2).sum().backward()
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-4, rtol=1e-4)
    assert layer.bias.grad is not None


def test_to_linear_and_state_dict_roundtrip() -> None:
    lin = _linear(64, 32, bias=False)
    layer = QuantLinear.from_linear(lin, "fp4", 32)
    back = layer.to_linear()
    assert back.bias is None and torch.equal(back.weight, layer.dequantize_weight())
    empty = QuantLinear(64, 32, bias=False, method="fp4", block_size=32)
    empty.load_state_dict(layer.state_dict())
    x = torch.randn(2, 64)
    with torch.no_grad():
        assert torch.equal(empty(x), layer(x))


def test_bytes_are_four_bits_plus_constants() -> None:
    layer = QuantLinear.from_linear(_linear(1024, 256, bias=False), "nf4", 64)
    n = 1024 * 256
    assert layer.qweight.dtype == torch.uint8 and layer.qweight.numel() == n // 2
    assert layer.quant_bytes() == n // 2 + n // 64 * 4
    dq = QuantLinear.from_linear(_linear(1024, 256, bias=False), "nf4", 64, double_quant=True)
    assert dq.absmax.dtype == torch.uint8
    assert 8 * dq.quant_bytes() / n == pytest.approx(4 + 8 / 64 + 32 / 64 / 256, abs=0.01)
    int8 = QuantLinear.from_linear(_linear(1024, 256, bias=False), "int8", 64)
    assert int8.quant_bytes() == n + n // 64 * 4


def test_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidInputError):
        QuantLinear(64, 64, method="q3")
    with pytest.raises(InvalidInputError):
        QuantLinear(64, 64, block_size=7)
    with pytest.raises(AttributeError):
        _ = ql.NotThere


def test_modules_import_without_torch() -> None:
    code = (
        "import sys\n"
        "import lmfoundry.quantize.modules, lmfoundry.quantize.linear, lmfoundry.quantize.blockwise\n"
        "assert 'torch' not in sys.modules, 'torch imported at module level'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
