"""Tensor-level quantization: worked examples, published tables, and bit parity with bitsandbytes."""

from __future__ import annotations

import pytest
import torch

from lmfoundry.errors import InvalidInputError
from lmfoundry.quantize import blockwise as qb

# NF4 as printed in the QLoRA paper (Dettmers et al. 2023, appendix E), typed in independently.
PUBLISHED_NF4 = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
]


def _bnb():
    bnb_f = pytest.importorskip("bitsandbytes.functional")
    return bnb_f


def test_affine_worked_example() -> None:
    x = torch.tensor([-0.8, -0.3, 0.0, 0.2, 0.7])
    codes = qb.affine_quantize(x, scale=0.1, zero_point=-0.8, bits=4)
    assert codes.tolist() == [0, 5, 8, 10, 15]
    back = qb.affine_dequantize(codes, scale=0.1, zero_point=-0.8)
    assert torch.allclose(back, x, atol=1e-6)


def test_affine_clamps_and_rejects_bad_arguments() -> None:
    assert qb.affine_quantize(torch.tensor([-5.0, 5.0]), 0.1, -0.8, 4).tolist() == [0, 15]
    with pytest.raises(InvalidInputError):
        qb.affine_quantize(torch.zeros(2), 0.0, 0.0, 4)
    with pytest.raises(InvalidInputError):
        qb.affine_quantize(torch.zeros(2), 0.1, 0.0, 9)


def test_nf4_codes_decode_to_published_table() -> None:
    code = qb.codebook("nf4")
    assert code.tolist() == pytest.approx(PUBLISHED_NF4, abs=0)
    assert code[0] == -1.0 and code[7] == 0.0 and code[15] == 1.0
    assert code[8].item() == pytest.approx(0.07958029955625534, abs=1e-9)
    # One full 64-value block holding each code exactly once (absmax 1): every code decodes to its table value.
    values = torch.tensor(PUBLISHED_NF4 * 4)
    packed, absmax = qb.quantize_4bit(values, "nf4", 64)
    assert qb.unpack_4bit(packed, 64).tolist() == list(range(16)) * 4
    decoded = qb.dequantize_4bit(packed, absmax, (64,), "nf4", 64)
    assert decoded.tolist() == pytest.approx(PUBLISHED_NF4 * 4, abs=1e-7)


def test_fp4_table_is_sign_exponent_mantissa() -> None:
    # e2m1 with exponent bias 2 and a subnormal: magnitudes 0, 0.0625, 8, 12, 4, 6, 2, 3 over 12.
    def fp4(bits: int) -> float:
        sign = -1.0 if bits & 8 else 1.0
        exp, man = (bits >> 1) & 3, bits & 1
        mag = 0.0625 * man if exp == 0 else 2.0 ** (exp - 2) * (1 + 0.5 * man) * 4
        return sign * mag / 12

    expected = [fp4(b) for b in range(16)]
    # bitsandbytes orders exponents 0b01 -> 8, 0b10 -> 4, 0b11 -> 2 (its own bit layout); compare as sets
    assert sorted(qb.codebook("fp4").tolist()) == pytest.approx(sorted(expected))


def test_pack_roundtrip_and_nibble_order() -> None:
    codes = torch.tensor([1, 2, 15, 0, 7], dtype=torch.uint8)
    packed = qb.pack_4bit(codes)
    assert packed.tolist() == [0x12, 0xF0, 0x70]
    assert torch.equal(qb.unpack_4bit(packed, 5), codes)


def test_nearest_code_ties_go_to_lower_entry() -> None:
    code = qb.codebook("nf4")
    mids = (code[:-1] + code[1:]) / 2
    assert qb.nearest_code(mids, code).tolist() == list(range(15))
    assert qb.nearest_code(code, code).tolist() == list(range(16))


@pytest.mark.parametrize("method", ["nf4", "fp4"])
@pytest.mark.parametrize("shape", [(64, 256), (33, 70), (3, 10)])
def test_4bit_matches_bitsandbytes(method: str, shape: tuple[int, ...]) -> None:
    bnb_f = _bnb()
    torch.manual_seed(1)
    w = torch.randn(*shape) * 0.05
    flat = w.view(-1)
    flat[:6] = torch.tensor([0.0, -0.0, 1e-6, -1e-6, 1e-9, -1e-9])[: flat.numel()]
    if flat.numel() > 64:
        flat[64:128] = 0.0  # an all-zero block
    ref_packed, ref_state = bnb_f.quantize_4bit(w, blocksize=64, quant_type=method)
    packed, absmax = qb.quantize_4bit(w, method, 64)
    assert torch.equal(packed, ref_packed.reshape(-1))
    assert torch.equal(absmax, ref_state.absmax)
    ours = qb.dequantize_4bit(packed, absmax, shape, method, 64)
    ref = bnb_f.dequantize_4bit(ref_packed, ref_state)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["nf4", "fp4"])
def test_odd_count_packs_like_bitsandbytes(method: str) -> None:
    # (bitsandbytes dequantizes odd shapes through torch.compile, slow on CPU: compare the codes only)
    bnb_f = _bnb()
    w = torch.randn(7) * 0.1
    ref_packed, ref_state = bnb_f.quantize_4bit(w, blocksize=64, quant_type=method)
    packed, absmax = qb.quantize_4bit(w, method, 64)
    assert torch.equal(packed, ref_packed.reshape(-1))
    assert torch.equal(absmax, ref_state.absmax)


def test_4bit_ties_match_bitsandbytes() -> None:
    bnb_f = _bnb()
    code = qb.codebook("nf4")
    mids = ((code[:-1] + code[1:]) / 2).tolist()
    # values exactly on midpoints once scaled (absmax 1 from the leading 1.0)
    w = torch.tensor(([1.0] + mids + [-m for m in mids]) * 2)[:64]
    ref_packed, _ = bnb_f.quantize_4bit(w, blocksize=64, quant_type="nf4")
    packed, _ = qb.quantize_4bit(w, "nf4", 64)
    assert torch.equal(packed, ref_packed.reshape(-1))


@pytest.mark.parametrize("method", ["nf4", "fp4"])
def test_double_quant_matches_bitsandbytes(method: str) -> None:
    bnb_f = _bnb()
    torch.manual_seed(2)
    w = torch.randn(300, 128) * torch.linspace(0.01, 0.2, 300).unsqueeze(1)
    ref_packed, ref_state = bnb_f.quantize_4bit(w, blocksize=64, quant_type=method, compress_statistics=True)
    packed, absmax = qb.quantize_4bit(w, method, 64)
    dq = qb.double_quantize(absmax)
    assert torch.equal(dq.codes, ref_state.absmax)
    assert torch.equal(dq.scales, ref_state.state2.absmax)
    assert dq.offset.item() == pytest.approx(ref_state.offset.item(), abs=0)
    ours = qb.dequantize_4bit(packed, qb.double_dequantize(dq), w.shape, method, 64)
    ref = bnb_f.dequantize_4bit(ref_packed, ref_state)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)


def test_dynamic_map_matches_bitsandbytes() -> None:
    bnb_f = _bnb()
    assert torch.equal(qb.dynamic_map(), bnb_f.create_dynamic_map(signed=True))


def test_double_quant_error_is_small() -> None:
    absmax = torch.rand(1000) + 0.5
    back = qb.double_dequantize(qb.double_quantize(absmax))
    assert (back - absmax).abs().max() < 0.01 * absmax.max()


def test_int8_blockwise_error_bound() -> None:
    torch.manual_seed(3)
    w = torch.randn(40, 96)
    codes, absmax = qb.quantize_int8(w, 64)
    assert codes.dtype == torch.int8 and absmax.numel() == qb.n_blocks(w.numel(), 64)
    back = qb.dequantize_int8(codes, absmax, tuple(w.shape), 64)
    # rounding error is at most half a step: absmax / 127 / 2 per block
    step = absmax.repeat_interleave(64)[: w.numel()].view(w.shape) / 127
    assert ((back - w).abs() <= step / 2 + 1e-6).all()


def test_quant_overhead_bytes_for_1b_parameters() -> None:
    n = 1_000_000_000
    single = qb.quant_overhead_bytes(n, 64, double_quant=False)
    double = qb.quant_overhead_bytes(n, 64, double_quant=True)
    assert single == n // 64 * 4 == 62_500_000
    blocks = n // 64
    assert double == blocks + -(-blocks // 256) * 4 + 4
    assert 8 * single / n == pytest.approx(0.5)
    assert 8 * double / n == pytest.approx(0.127, abs=0.001)
    assert single - double == pytest.approx(46.6e6, rel=0.01)  # what double quantization saves per 1B weights


def test_rejects_bad_block_size_and_method() -> None:
    with pytest.raises(InvalidInputError, match="block size"):
        qb.quantize_4bit(torch.zeros(8), "nf4", 63)
    with pytest.raises(InvalidInputError, match="block size"):
        qb.quantize_int8(torch.zeros(8), 0)
    with pytest.raises(InvalidInputError, match="codebook"):
        qb.codebook("int3")
    with pytest.raises(InvalidInputError, match="unknown quantization method"):
        qb.check_method("q4_k_m")
