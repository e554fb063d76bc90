"""Pure tensor functions for blockwise quantization: codebooks, absmax scaling, packing, double quant.

The 4-bit formats follow bitsandbytes bit for bit (tested against it): the flattened weight is cut
into blocks of `block_size` values, each block is divided by its absolute maximum (`absmax`, fp32),
and every scaled value gets the index of the nearest codebook entry (decided by the midpoints
between sorted entries; a value exactly on a midpoint takes the lower entry). Two 4-bit codes are
packed per byte, the first value in the high nibble. Double quantization (QLoRA) subtracts the mean
of the absmax values and quantizes them with the signed 8-bit dynamic map in blocks of 256, each
block with its own fp32 scale.

int8 is our own symmetric linear format: blockwise absmax, code = round(x * 127 / absmax).

Everything here imports torch lazily so the module stays importable with the base dependencies.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from lmfoundry.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

# The 16 NormalFloat4 values published with QLoRA (Dettmers et al. 2023, appendix E), code 0..15.
NF4_VALUES: tuple[float, ...] = (
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
)
# FP4 (1 sign, 2 exponent, 1 mantissa bit, bias 2) in bit-pattern order, as bitsandbytes lays it
# out; bit 3 is the sign. Normalised by the largest magnitude (12) so the range is [-1, 1].
_FP4_RAW: tuple[float, ...] = (0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3)
FP4_VALUES: tuple[float, ...] = tuple(v / 12.0 for v in _FP4_RAW)

FOUR_BIT_METHODS = ("nf4", "fp4")
METHODS = ("nf4", "fp4", "int8")
DQ_BLOCK = 256
INT8_MAX = 127


class DoubleQuant(NamedTuple):
    """Absmax constants quantized to 8 bits: code[q] * scale[block] + offset."""

    codes: torch.Tensor  # uint8, one per first-level block
    scales: torch.Tensor  # fp32, one per `dq_block` codes
    offset: torch.Tensor  # fp32 scalar: the mean subtracted before quantizing


def check_method(method: str) -> str:
    if method not in METHODS:
        raise InvalidInputError(f"unknown quantization method {method!r} (choose from {', '.join(METHODS)})")
    return method


def check_block_size(block_size: int) -> int:
    """Blocks must hold an even number of values so two 4-bit codes never straddle a block edge."""
    if not isinstance(block_size, int) or block_size < 2 or block_size % 2:
        raise InvalidInputError(f"block size must be an even integer >= 2, got {block_size!r}")
    return block_size


def n_blocks(n: int, block_size: int) -> int:
    return -(-n // block_size)


@functools.cache
def codebook(method: str, device: str = "cpu") -> torch.Tensor:
    """The 16 code values of a 4-bit method as fp32 (cached per device)."""
    import torch

    values = {"nf4": NF4_VALUES, "fp4": FP4_VALUES}.get(method)
    if values is None:
        raise InvalidInputError(f"{method!r} has no 4-bit codebook (choose from nf4, fp4)")
    return torch.tensor(values, dtype=torch.float32, device=device)


@functools.cache
def pair_table(method: str, device: str = "cpu") -> torch.Tensor:
    """[256, 2] table: byte b -> (value of high nibble, value of low nibble); unpacks two codes at once."""
    import torch

    code = codebook(method, device)
    byte = torch.arange(256, device=device)
    return torch.stack([code[byte >> 4], code[byte & 15]], dim=1).contiguous()


@functools.cache
def dynamic_map(device: str = "cpu") -> torch.Tensor:
    """The signed 8-bit dynamic map (Dettmers 2015) bitsandbytes uses for double quantization.

    Same construction as `bitsandbytes.functional.create_dynamic_map(signed=True)`: 7 exponent
    ranges 10^-6..10^0, each with 2^i linearly spaced fraction means, mirrored, plus 0 and 1.
    """
    import torch

    data: list[float] = []
    for i in range(7):
        bounds = torch.linspace(0.1, 1, 2**i + 1, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0.0, 1.0]
    return torch.tensor(sorted(data), dtype=torch.float32, device=device)


def _blocks(w: torch.Tensor, block_size: int) -> tuple[torch.Tensor, int]:
    """Flatten to fp32 and zero-pad to whole blocks (zeros never change a block's absmax)."""
    import torch

    flat = w.detach().reshape(-1).float()
    n = flat.numel()
    pad = n_blocks(n, block_size) * block_size - n
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return flat.view(-1, block_size), n


def absmax_scale(w: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Return (values scaled into [-1, 1] as [blocks, block_size], absmax per block, n).

    Multiplies by the reciprocal (not a division) exactly as bitsandbytes does, so values that sit
    on a rounding boundary land in the same code.
    """
    blocks, n = _blocks(w, block_size)
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks * (1.0 / absmax.clamp(min=1e-38)).unsqueeze(1)).clamp_(-1, 1)
    return scaled, absmax, n


def nearest_code(scaled: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code value (midpoint rule, ties to the lower sorted entry) as uint8."""
    return code_rounder(code)(scaled)


def code_rounder(code: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """`nearest_code` with the codebook's sort and midpoints done once (for callers that round often)."""
    import torch

    order = torch.argsort(code, stable=True)
    ordered = code[order]
    mids = (ordered[:-1] + ordered[1:]) / 2
    code_of = order.to(torch.uint8)
    return lambda scaled: code_of[torch.bucketize(scaled, mids)]


def pack_4bit(codes: torch.Tensor) -> torch.Tensor:
    """Pack 4-bit codes two per byte, the first in the high nibble (bitsandbytes' order)."""
    import torch

    flat = codes.reshape(-1).to(torch.uint8)
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    return (flat[0::2] << 4) | flat[1::2]


def unpack_4bit(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of `pack_4bit`: the first `n` codes as uint8."""
    import torch

    return torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)[:n]


def quantize_4bit(
    w: torch.Tensor, method: str = "nf4", block_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize any float tensor to (packed uint8 [ceil(n/2)], absmax fp32 [blocks])."""
    check_block_size(block_size)
    code = codebook(method, str(w.device))
    scaled, absmax, n = absmax_scale(w, block_size)
    # an odd count gets the code of 0.0 in its last low nibble, as in bitsandbytes
    codes = nearest_code(scaled.reshape(-1)[: n + n % 2], code)
    return pack_4bit(codes), absmax


def dequantize_4bit(
    packed: torch.Tensor,
    absmax: torch.Tensor,
    shape: tuple[int, ...],
    method: str = "nf4",
    block_size: int = 64,
) -> torch.Tensor:
    """fp32 values of `shape` from packed codes: pair table lookup, then times the block absmax."""
    n = math.prod(shape)
    table = pair_table(method, str(packed.device))
    values = table.index_select(0, packed.reshape(-1).int()).reshape(-1)
    return scale_blocks(values, absmax, n, block_size).reshape(shape)


def scale_blocks(values: torch.Tensor, absmax: torch.Tensor, n: int, block_size: int) -> torch.Tensor:
    """Multiply unit-range values by their block's absmax; `values` may carry padding past `n`."""
    import torch

    full = n_blocks(n, block_size) * block_size
    if values.numel() < full:
        values = torch.cat([values, values.new_zeros(full - values.numel())])
    return (values[:full].view(-1, block_size) * absmax.view(-1, 1)).reshape(-1)[:n]


def quantize_int8(w: torch.Tensor, block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric linear int8 per block: (codes int8 [n], absmax fp32 [blocks])."""
    import torch

    check_block_size(block_size)
    scaled, absmax, n = absmax_scale(w, block_size)
    codes = torch.round(scaled.reshape(-1)[:n] * INT8_MAX).to(torch.int8)
    return codes, absmax


def dequantize_int8(
    codes: torch.Tensor, absmax: torch.Tensor, shape: tuple[int, ...], block_size: int = 64
) -> torch.Tensor:
    n = math.prod(shape)
    values = codes.reshape(-1).float() * (1.0 / INT8_MAX)
    return scale_blocks(values, absmax, n, block_size).reshape(shape)


def double_quantize(absmax: torch.Tensor, dq_block: int = DQ_BLOCK) -> DoubleQuant:
    """QLoRA double quantization: (absmax - mean) -> 8-bit dynamic codes with fp32 scales per dq_block."""
    offset = absmax.float().mean()
    centred = absmax.float() - offset
    scaled, scales, n = absmax_scale(centred, dq_block)
    codes = nearest_code(scaled.reshape(-1)[:n], dynamic_map(str(absmax.device)))
    return DoubleQuant(codes, scales, offset)


def double_dequantize(dq: DoubleQuant, dq_block: int = DQ_BLOCK) -> torch.Tensor:
    """fp32 absmax values back from their 8-bit codes."""
    values = dynamic_map(str(dq.codes.device))[dq.codes.int()]
    return scale_blocks(values, dq.scales, dq.codes.numel(), dq_block) + dq.offset


def affine_quantize(x: torch.Tensor, scale: float, zero_point: float, bits: int = 4) -> torch.Tensor:
    """Textbook affine quantization: code = round((x - zero_point) / scale), clamped to [0, 2^bits - 1]."""
    import torch

    if bits < 1 or bits > 8:
        raise InvalidInputError(f"affine quantization supports 1..8 bits, got {bits}")
    if scale <= 0:
        raise InvalidInputError(f"scale must be positive, got {scale}")
    codes = torch.round((x.float() - zero_point) / scale)
    return codes.clamp_(0, 2**bits - 1).to(torch.uint8)


def affine_dequantize(codes: torch.Tensor, scale: float, zero_point: float) -> torch.Tensor:
    """x = code * scale + zero_point."""
    return codes.float() * scale + zero_point


def quant_overhead_bytes(
    n_params: int, block_size: int = 64, double_quant: bool = False, dq_block: int = DQ_BLOCK
) -> int:
    """Bytes of quantization constants for `n_params` weights (the codes themselves not included).

    single: one fp32 absmax per block (32/64 = 0.5 bits/param at block 64).
    double: one uint8 per block + one fp32 scale per `dq_block` blocks + one fp32 offset
    (8/64 + 32/(64*256) = 0.127 bits/param).
    """
    blocks = n_blocks(n_params, block_size)
    if not double_quant:
        return blocks * 4
    return blocks + n_blocks(blocks, dq_block) * 4 + 4


def weight_bytes(n_params: int, method: str) -> int:
    """Bytes of the codes alone: 4-bit methods pack two per byte."""
    return n_blocks(n_params, 2) if method in FOUR_BIT_METHODS else n_params
