"""Quantized input embedding and output head: the weights a tied model keeps in fp32 otherwise.

A causal LM's token embedding (vocab x hidden, 49152 x 576 = 113 MB fp32 on SmolLM2-135M) is
often the largest single tensor, and with tied weights it is also the output head. Quantizing the
linear layers alone leaves it in fp32. Here it gets the same blockwise formats as `QuantLinear`
(nf4/fp4 with two codes per byte, or int8; optional double quantization), in the same flat
row-major block layout, so that:

- `QuantEmbedding` (the lookup) dequantizes only the rows of the looked-up token ids; the fp32
  matrix never exists. Rows must start on block boundaries, so `block_size` must divide the
  embedding width.
- the output head is a `QuantLinear` over the same code buffers: when the head is tied to the
  embedding it *shares* the embedding's buffers (one copy in memory and in the file), and its
  forward computes logits band by band from the codes.

The class derives from `torch.nn.Module`, so it is built once, on first use, by
`quant_embedding_class()` from the mixin `_QuantEmbeddingMethods` and `torch.nn.Module`: importing
this module does not import torch.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.quantize import blockwise as qb
from lmfoundry.quantize.linear import (
    ModuleBase,
    build_quantized,
    format_repr,
    module_class,
    quant_bytes,
    quant_linear_class,
    register_quant_buffers,
    set_format,
)

if TYPE_CHECKING:
    import torch

QUANT_BUFFERS = ("qweight", "absmax", "absmax_scale", "absmax_offset")


def check_row_blocks(embedding_dim: int, block_size: int) -> None:
    """A row lookup needs every row to start on a block boundary (and, for 4-bit, on a byte)."""
    if embedding_dim % block_size:
        divisors = [b for b in (32, 64, 128, 256) if embedding_dim % b == 0]
        hint = f" (e.g. {', '.join(map(str, divisors))})" if divisors else ""
        raise InvalidInputError(
            f"cannot quantize an embedding of width {embedding_dim} with block size {block_size}: "
            f"the block size must divide the width{hint}"
        )


def row_absmax(layer: Any, rows: torch.Tensor) -> torch.Tensor:
    """fp32 absmax of every block of the given rows, [len(rows), blocks_per_row].

    With double quantization only the needed 8-bit codes are decoded
    (`DYN[code] * scale[block // 256] + offset`, the same arithmetic as `double_dequantize`).
    """
    import torch

    per_row = layer.embedding_dim // layer.block_size
    blocks = rows.unsqueeze(1) * per_row + torch.arange(per_row, device=rows.device)
    if not layer.double_quant:
        return layer.absmax[blocks]
    values = qb.dynamic_map(str(layer.absmax.device))[layer.absmax[blocks].int()]
    return values * layer.absmax_scale[blocks // qb.DQ_BLOCK] + layer.absmax_offset


def lookup(layer: Any, ids: torch.Tensor) -> torch.Tensor:
    """fp32 embedding vectors of `ids` (any shape) -> [*ids.shape, embedding_dim]."""
    flat = ids.reshape(-1)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= layer.num_embeddings):
        raise IndexError(f"token id out of range for an embedding of {layer.num_embeddings} rows")
    k, bs = layer.embedding_dim, layer.block_size
    if layer.method == "int8":
        codes = layer.qweight.view(layer.num_embeddings, k).index_select(0, flat)
        values = codes.float().mul_(1.0 / qb.INT8_MAX)
    else:
        packed = layer.qweight.view(layer.num_embeddings, k // 2).index_select(0, flat)
        table = qb.pair_table(layer.method, str(layer.qweight.device))
        values = table.index_select(0, packed.reshape(-1).int())
    n = flat.numel()
    scaled = values.view(n, k // bs, bs) * row_absmax(layer, flat).unsqueeze(-1)
    return scaled.view(*ids.shape, k)


def dequantize_embedding(layer: Any) -> torch.Tensor:
    """The full fp32 weight [num_embeddings, embedding_dim] (for export and tests only)."""
    import torch

    return lookup(layer, torch.arange(layer.num_embeddings, device=layer.qweight.device))


def head_sharing(embedding: Any) -> Any:
    """A bias-free `QuantLinear` output head whose buffers *are* the embedding's (a tied head)."""
    head = quant_linear_class()(
        embedding.embedding_dim,
        embedding.num_embeddings,
        False,
        embedding.method,
        embedding.block_size,
        embedding.double_quant,
        device="meta",
    )
    tie_head(head, embedding)
    return head


def tie_head(head: Any, embedding: Any) -> None:
    """Point the head's quantization buffers at the embedding's (after loading, or when building)."""
    for name in QUANT_BUFFERS:
        if hasattr(embedding, name):
            setattr(head, name, getattr(embedding, name))


def shares_buffers(head: Any, embedding: Any) -> bool:
    return getattr(head, "qweight", None) is getattr(embedding, "qweight", object())


class _QuantEmbeddingMethods(ModuleBase):
    """Token embedding with blockwise-quantized rows; buffers as in `QuantLinear`."""

    num_embeddings: int
    embedding_dim: int
    method: str
    block_size: int
    double_quant: bool
    padding_idx: int | None

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        method: str = "int8",
        block_size: int = 64,
        double_quant: bool = False,
        padding_idx: int | None = None,
        device: Any = None,
    ) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        set_format(self, method, block_size, double_quant)
        check_row_blocks(embedding_dim, block_size)
        self.padding_idx = padding_idx
        # the weight is [num_embeddings, embedding_dim] like a linear's [out_features, in_features]
        register_quant_buffers(self, embedding_dim, num_embeddings, device)

    @classmethod
    def from_embedding(
        cls, embedding: object, method: str = "int8", block_size: int = 64, double_quant: bool = False
    ) -> Any:
        """Quantize `embedding`, which must be a plain `torch.nn.Embedding` (checked here)."""
        import torch

        if type(embedding) is not torch.nn.Embedding:
            raise InvalidInputError(
                f"cannot quantize {type(embedding).__name__}: only a plain torch.nn.Embedding "
                "(subclasses may scale or add to the lookup)"
            )
        sizes = (embedding.num_embeddings, embedding.embedding_dim)
        args = (*sizes, method, block_size, double_quant, embedding.padding_idx)
        # quantize_into reads in/out features only through the weight's shape
        return build_quantized(cls, args, embedding.weight)

    @property
    def in_features(self) -> int:  # for quantize_into / quant_bytes, which speak linear
        return self.embedding_dim

    @property
    def out_features(self) -> int:
        return self.num_embeddings

    def dequantize_weight(self) -> torch.Tensor:
        return dequantize_embedding(self)

    def to_embedding(self) -> torch.nn.Embedding:
        import torch

        embedding = torch.nn.Embedding(
            self.num_embeddings, self.embedding_dim, self.padding_idx, device="meta"
        )
        embedding.weight = torch.nn.Parameter(self.dequantize_weight())
        return embedding

    def quant_bytes(self) -> int:
        return quant_bytes(self)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return lookup(self, ids)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {format_repr(self)}"


@functools.cache
def quant_embedding_class() -> Any:
    """Build (once) and return the QuantEmbedding class."""
    return module_class(_QuantEmbeddingMethods, "QuantEmbedding")
