"""`QuantLinear`: a drop-in for `nn.Linear` that keeps its weight as 4-bit (nf4/fp4) or int8 codes.

Buffers (all in the state dict, so safetensors round-trips them):
  qweight        uint8 [ceil(n/2)] two 4-bit codes per byte (high nibble first), or int8 [n]
  absmax         fp32 [blocks], or uint8 [blocks] with double quantization, plus
  absmax_scale   fp32 [ceil(blocks/256)] and absmax_offset fp32 [] (double quantization only)
  bias           fp32 parameter, kept unquantized

`forward` on a few fp32 rows on CPU (decode: up to NATIVE_MAX_ROWS) runs the native C kernel
(`lmfoundry.quantize.native`), which multiplies straight from the codes; otherwise, or when that
kernel is off (`LMF_NATIVE_KERNELS=0`) or cannot be compiled, it dequantizes a band of output rows
at a time (about 2 MB of fp32) and multiplies, so the temporary stays in cache and never reaches
the size of the full fp32 weight. The backward pass re-dequantizes band by band instead of saving
the weight, which keeps QLoRA training at the quantized size.

The class derives from `torch.nn.Module`, so it is built once, on first use, by
`quant_linear_class()` from the mixin `_QuantLinearMethods` and `torch.nn.Module`: importing this
module does not import torch.
"""

from __future__ import annotations

import functools
import math
import sys
from typing import TYPE_CHECKING, Any

from lmfoundry.quantize import blockwise as qb
from lmfoundry.quantize import native

if TYPE_CHECKING:
    import torch

    ModuleBase = torch.nn.Module
else:
    ModuleBase = object  # the mixins below get torch.nn.Module as a base when their class is built

CHUNK_ELEMENTS = 1 << 19  # fp32 values dequantized at once: 2 MB, measured fastest on CPU
NATIVE_MAX_ROWS = 64  # the native kernel beat dequantize + BLAS up to 64 rows, lost at 96 (bench/qgemv.py)


def buffer_shapes(
    in_features: int, out_features: int, method: str, block_size: int, double_quant: bool
) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, dtype name) of every quantization buffer; used to build empty skeletons."""
    n = in_features * out_features
    blocks = qb.n_blocks(n, block_size)
    shapes: dict[str, tuple[tuple[int, ...], str]] = {
        "qweight": ((qb.weight_bytes(n, method),), "int8" if method == "int8" else "uint8"),
    }
    if double_quant:
        shapes["absmax"] = ((blocks,), "uint8")
        shapes["absmax_scale"] = ((qb.n_blocks(blocks, qb.DQ_BLOCK),), "float32")
        shapes["absmax_offset"] = ((), "float32")
    else:
        shapes["absmax"] = ((blocks,), "float32")
    return shapes


def layer_absmax(layer: Any) -> torch.Tensor:
    """fp32 absmax per block, undoing double quantization when it was used."""
    if not layer.double_quant:
        return layer.absmax
    dq = qb.DoubleQuant(layer.absmax, layer.absmax_scale, layer.absmax_offset)
    return qb.double_dequantize(dq)


def rows_per_chunk(in_features: int, block_size: int) -> int:
    """Rows per band: about CHUNK_ELEMENTS values, and a band always ends on a block boundary."""
    step = block_size // math.gcd(in_features, block_size)
    rows = max(1, CHUNK_ELEMENTS // in_features)
    return max(step, rows // step * step)


def dequantize_rows(layer: Any, absmax: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
    """fp32 weight rows [r0, r1) (r0 on a block boundary)."""
    k, bs = layer.in_features, layer.block_size
    start, stop = r0 * k, r1 * k
    if layer.method == "int8":
        values = layer.qweight[start:stop].float().mul_(1.0 / qb.INT8_MAX)
    else:
        table = qb.pair_table(layer.method, str(layer.qweight.device))
        packed = layer.qweight[start // 2 : -(-stop // 2)]
        values = table.index_select(0, packed.int()).view(-1)
    scales = absmax[start // bs : qb.n_blocks(stop, bs)]
    return qb.scale_blocks(values, scales, stop - start, bs).view(r1 - r0, k)


def dequantize_weight(layer: Any) -> torch.Tensor:
    """The full fp32 weight [out_features, in_features]."""
    return dequantize_rows(layer, layer_absmax(layer), 0, layer.out_features)


def _bands(layer: Any) -> list[tuple[int, int]]:
    step = rows_per_chunk(layer.in_features, layer.block_size)
    return [(r0, min(r0 + step, layer.out_features)) for r0 in range(0, layer.out_features, step)]


def matmul(layer: Any, x2d: torch.Tensor) -> torch.Tensor:
    """x2d @ W.T: the native kernel for a few fp32 rows on CPU, else one band of dequantized rows at a time."""
    import torch

    if x2d.shape[0] <= NATIVE_MAX_ROWS:
        fast = native.quant_matmul(layer, x2d)  # None when it does not apply
        if fast is not None:
            return fast
    absmax = layer_absmax(layer)
    out = x2d.new_empty(x2d.shape[0], layer.out_features)
    for r0, r1 in _bands(layer):
        out[:, r0:r1] = x2d @ dequantize_rows(layer, absmax, r0, r1).to(x2d.dtype).t()
    return out if x2d.dtype == torch.float32 else out.to(x2d.dtype)


def matmul_t(layer: Any, g2d: torch.Tensor) -> torch.Tensor:
    """g2d @ W (the input gradient), band by band."""
    absmax = layer_absmax(layer)
    grad = g2d.new_zeros(g2d.shape[0], layer.in_features)
    for r0, r1 in _bands(layer):
        grad += g2d[:, r0:r1] @ dequantize_rows(layer, absmax, r0, r1).to(g2d.dtype)
    return grad


def quantize_into(layer: Any, weight: torch.Tensor) -> None:
    """Fill `layer`'s buffers from an fp weight of shape [out_features, in_features]."""
    if layer.method == "int8":
        codes, absmax = qb.quantize_int8(weight, layer.block_size)
    else:
        codes, absmax = qb.quantize_4bit(weight, layer.method, layer.block_size)
    store_codes(layer, codes, absmax)


def store_codes(layer: Any, codes: torch.Tensor, absmax: torch.Tensor) -> None:
    """Set `layer`'s buffers from codes in `qweight` layout and fp32 absmax (double-quantized if asked)."""
    layer.qweight = codes
    if layer.double_quant:
        dq = qb.double_quantize(absmax)
        layer.absmax, layer.absmax_scale, layer.absmax_offset = dq.codes, dq.scales, dq.offset
    else:
        layer.absmax = absmax


def quant_bytes(layer: Any) -> int:
    """Bytes held by the quantized weight and its constants (bias excluded)."""
    names = buffer_shapes(1, 1, layer.method, layer.block_size, layer.double_quant)
    return sum(getattr(layer, name).nbytes for name in names)


@functools.cache
def _matmul_function() -> Any:
    import torch

    class DequantMatmul(torch.autograd.Function):
        """y = x @ W.T where W is dequantized on the fly; backward re-dequantizes (saves only x's shape)."""

        @staticmethod
        def forward(ctx: Any, x2d: torch.Tensor, layer: Any) -> torch.Tensor:
            ctx.layer = layer
            return matmul(layer, x2d)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
            if not ctx.needs_input_grad[0]:
                return None, None
            return matmul_t(ctx.layer, grad), None

    return DequantMatmul


def module_class(methods: type, name: str) -> Any:
    """A `torch.nn.Module` subclass named `name` whose methods come from the mixin `methods`.

    It lives in (and pickles from) the mixin's module: it is also set as that module's attribute
    `name`, so pickle finds it by name once built.
    """
    import torch

    attrs = {"__module__": methods.__module__, "__qualname__": name, "__doc__": methods.__doc__}
    cls = type(name, (methods, torch.nn.Module), attrs)
    setattr(sys.modules[methods.__module__], name, cls)
    return cls


def set_format(layer: Any, method: str, block_size: int, double_quant: bool) -> None:
    """Check and set the quantization format attributes (method, block_size, double_quant)."""
    layer.method = qb.check_method(method)
    layer.block_size = qb.check_block_size(block_size)
    layer.double_quant = double_quant


def register_quant_buffers(layer: Any, in_features: int, out_features: int, device: Any) -> None:
    """Register zeroed quantization buffers for a weight [out_features, in_features] in `layer`'s format."""
    import torch

    shapes = buffer_shapes(in_features, out_features, layer.method, layer.block_size, layer.double_quant)
    for name, (shape, dtype) in shapes.items():
        layer.register_buffer(name, torch.zeros(shape, dtype=getattr(torch, dtype), device=device))


def build_quantized(
    cls: Any,
    args: tuple[Any, ...],
    weight: torch.Tensor,
    codes: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Any:
    """`cls(*args)` on the meta device with its buffers quantized from `weight` (or set from `codes`)."""
    layer = cls(*args, device="meta")
    if codes is None:
        quantize_into(layer, weight.detach())
    else:
        store_codes(layer, *codes)
    return layer


def format_repr(layer: Any) -> str:
    """The quantization format, for `extra_repr` (shared by the quantized classes)."""
    return f"method={layer.method}, block_size={layer.block_size}, double_quant={layer.double_quant}"


class _QuantLinearMethods(ModuleBase):
    """Linear layer with a blockwise-quantized weight; see the module docstring for the buffers."""

    in_features: int
    out_features: int
    method: str
    block_size: int
    double_quant: bool
    bias: torch.nn.Parameter | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        method: str = "nf4",
        block_size: int = 64,
        double_quant: bool = False,
        device: Any = None,
    ) -> None:
        import torch

        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        set_format(self, method, block_size, double_quant)
        register_quant_buffers(self, in_features, out_features, device)
        b = torch.zeros(out_features, device=device) if bias else None
        self.bias = torch.nn.Parameter(b) if b is not None else None

    @classmethod
    def from_linear(
        cls,
        linear: torch.nn.Linear,
        method: str = "nf4",
        block_size: int = 64,
        double_quant: bool = False,
        codes: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> Any:
        """Quantize `linear` (round to nearest), or take `codes` = (qweight, absmax) chosen elsewhere (GPTQ)."""
        import torch

        has_bias = linear.bias is not None
        args = (linear.in_features, linear.out_features, has_bias, method, block_size, double_quant)
        layer = build_quantized(cls, args, linear.weight, codes)
        if linear.bias is not None:
            layer.bias = torch.nn.Parameter(linear.bias.detach().float().clone())
        return layer

    def dequantize_weight(self) -> torch.Tensor:
        return dequantize_weight(self)

    def to_linear(self) -> torch.nn.Linear:
        import torch

        linear = torch.nn.Linear(
            self.in_features, self.out_features, bias=self.bias is not None, device="meta"
        )
        linear.weight = torch.nn.Parameter(self.dequantize_weight())
        if self.bias is not None:
            linear.bias = torch.nn.Parameter(self.bias.detach().clone())
        return linear

    def quant_bytes(self) -> int:
        return quant_bytes(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        x2d = x.reshape(-1, self.in_features)
        if torch.is_grad_enabled() and x2d.requires_grad:
            y = _matmul_function().apply(x2d, self)
        else:
            y = matmul(self, x2d)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        sizes = f"in_features={self.in_features}, out_features={self.out_features}"
        return f"{sizes}, {format_repr(self)}, bias={self.bias is not None}"


@functools.cache
def quant_linear_class() -> Any:
    """Build (once) and return the QuantLinear class (pickles as lmfoundry.quantize.linear.QuantLinear)."""
    return module_class(_QuantLinearMethods, "QuantLinear")
