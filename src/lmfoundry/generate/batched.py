"""Continuous-batching primitives for transformers models: prefill one request, then decode every
active request together, one token per row per step, with rows joining and leaving between steps.

Why: on a CPU a forward over 16 rows costs little more than over one (the weights are read once),
so serving many clients at once multiplies throughput. Rows live left-padded in one KV cache with
an attention mask and explicit position ids, so every row computes what it would alone (greedy
outputs match single runs). Prefill runs one request at a time without padding, exactly as alone.

This module knows token ids and logits only; sampling, stop strings and queues belong to callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmfoundry.models.adapters import BASE_ADAPTER

if TYPE_CHECKING:
    import torch

KV = list[tuple["torch.Tensor", "torch.Tensor"]]
"""Per layer (keys, values), each [batch, kv_heads, positions, head_dim]."""


@dataclass
class Row:
    key: Any
    """The caller's handle for this sequence (any hashable)."""
    length: int
    """Real (unpadded) positions in this row's KV cache."""
    next_token: int
    """The sampled token not yet fed to the model."""
    adapter: str | None


def supports_batching(model: Any) -> bool:
    """True for decoder models whose every layer is full attention (our padded cache assumes that)."""
    config = (
        model.config.get_text_config(decoder=True)
        if hasattr(model.config, "get_text_config")
        else model.config
    )
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    return all(t == "full_attention" for t in layer_types) and not getattr(
        config, "is_encoder_decoder", False
    )


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config")


class BatchedDecoder:
    """Owns one padded KV cache for the running batch. Not thread-safe: one scheduler thread uses it."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.rows: list[Row] = []
        self._kv: KV = []
        self._mask: torch.Tensor | None = None  # [batch, positions] bool, False = padding

    def __len__(self) -> int:
        return len(self.rows)

    def _adapter_kwargs(self, adapters: list[str | None]) -> dict[str, Any]:
        if not is_peft(self.model):
            if any(adapters):
                raise ValueError("this model has no adapters loaded")
            return {}
        return {"adapter_names": [a or BASE_ADAPTER for a in adapters]}

    def prefill(self, prompt_ids: list[int], adapter: str | None = None) -> tuple[torch.Tensor, KV]:
        """Run one prompt alone; return the last position's logits [vocab] and its KV cache."""
        import torch

        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([prompt_ids]),
                use_cache=True,
                logits_to_keep=1,
                **self._adapter_kwargs([adapter]),
            )
        kv = [(layer.keys, layer.values) for layer in out.cache.layers]
        return out.logits[0, -1], kv

    def add(self, key: Any, kv: KV, length: int, next_token: int, adapter: str | None = None) -> None:
        """Merge a prefilled sequence into the running batch (left-padding whichever side is shorter)."""
        import torch

        row_mask = torch.ones(1, length, dtype=torch.bool)
        if not self.rows:
            self._kv, self._mask = list(kv), row_mask
        else:
            assert self._mask is not None
            width = max(self._mask.shape[1], length)
            old_kv, old_mask = _left_pad(self._kv, self._mask, width)
            new_kv, new_mask = _left_pad(kv, row_mask, width)
            self._kv = [
                (torch.cat([k0, k1]), torch.cat([v0, v1]))
                for (k0, v0), (k1, v1) in zip(old_kv, new_kv, strict=True)
            ]
            self._mask = torch.cat([old_mask, new_mask])
        self.rows.append(Row(key, length, next_token, adapter))

    def remove(self, keys: set[Any]) -> None:
        """Drop finished or cancelled rows, then trim padding columns no remaining row needs."""
        import torch

        keep = [i for i, row in enumerate(self.rows) if row.key not in keys]
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self._kv, self._mask = [], None
            return
        assert self._mask is not None
        index = torch.tensor(keep)
        mask = self._mask.index_select(0, index)
        start = int(min(int((~m).sum()) for m in mask))  # rows are left-padded: leading Falses
        self._mask = mask[:, start:]
        self._kv = [
            (k.index_select(0, index)[:, :, start:], v.index_select(0, index)[:, :, start:])
            for k, v in self._kv
        ]

    def step(self) -> torch.Tensor:
        """Feed every row its pending token; return next-token logits [rows, vocab] in row order."""
        import torch
        from transformers import DynamicCache

        assert self._mask is not None and self.rows
        ones = torch.ones(len(self.rows), 1, dtype=torch.bool)
        mask = torch.cat([self._mask, ones], dim=1)
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([[row.next_token] for row in self.rows]),
                attention_mask=mask.long(),
                position_ids=torch.tensor([[row.length] for row in self.rows]),
                cache=DynamicCache(ddp_cache_data=self._kv),
                use_cache=True,
                **self._adapter_kwargs([row.adapter for row in self.rows]),
            )
        self._kv = [(layer.keys, layer.values) for layer in out.cache.layers]
        self._mask = mask
        for row in self.rows:
            row.length += 1
        return out.logits[:, -1]


def _left_pad(kv: KV, mask: torch.Tensor, width: int) -> tuple[KV, torch.Tensor]:
    import torch

    extra = width - mask.shape[1]
    if extra == 0:
        return kv, mask
    padded = []
    for k, v in kv:
        zeros = k.new_zeros(k.shape[0], k.shape[1], extra, k.shape[3])
        padded.append((torch.cat([zeros, k], dim=2), torch.cat([zeros, v], dim=2)))
    return padded, torch.cat([torch.zeros(mask.shape[0], extra, dtype=torch.bool), mask], dim=1)
