"""Causal-LM loss from hidden states, in chunks, over completion tokens only.

Why not `model(..., labels=...)`: transformers computes logits for every position (batch x
sequence x vocabulary floats, 200 MB for SmolLM2 at batch 4 x 256) and keeps them, and their
gradient, for backward. Here the output head is swapped for an identity while the model runs,
so it returns hidden states; then only positions whose next token is a training target (label
!= -100: prompt tokens are skipped altogether) go through the head, `chunk` rows at a time, each
chunk under activation checkpointing so its logits are freed at once and recomputed in backward.
The value equals the mean token cross-entropy transformers computes (tested against it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lmfoundry.finetune.data.tokenize import IGNORE_INDEX

if TYPE_CHECKING:
    import torch


def hf_model(model: Any) -> Any:
    """The transformers model inside a DDP and/or peft wrapper (or the model itself)."""
    model = unwrap_parallel(model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def unwrap_parallel(model: Any) -> Any:
    """The module inside torch's DistributedDataParallel / FSDP wrappers (or the model itself)."""
    import sys

    import torch

    wrappers: tuple[type, ...] = (torch.nn.parallel.DistributedDataParallel,)
    fsdp = sys.modules.get("torch.distributed.fsdp")  # only a run that uses FSDP has imported it
    if fsdp is not None:
        wrappers += (fsdp.FullyShardedDataParallel,)
    inner: Any = model
    while isinstance(inner, wrappers):
        inner = getattr(inner, "module")  # noqa: B009 (mypy cannot narrow the wrapper types)
    return inner


@contextlib.contextmanager
def hidden_states_out(model: Any) -> Iterator[Any]:
    """Temporarily replace the output head with an identity; yield the real head."""
    import torch

    base = hf_model(model)
    head = base.get_output_embeddings()
    base.set_output_embeddings(torch.nn.Identity())
    try:
        yield head
    finally:
        base.set_output_embeddings(head)


def _chunk_loss_sum(head: Any, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    import torch

    logits = head(hidden).float()
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")


def target_hidden(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """(hidden states of positions with a target, their target ids, the output head)."""
    labels = batch["labels"]
    with hidden_states_out(model) as head:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    hidden = out.logits[:, -labels.shape[1] :]  # soft-prompt methods prepend virtual tokens
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    return hidden[:, :-1][keep], targets[keep], head


def chunked_loss(model: Any, batch: dict[str, torch.Tensor], chunk: int = 256) -> tuple[torch.Tensor, int]:
    """(mean cross-entropy over target tokens, number of target tokens)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    hidden, targets, head = target_hidden(model, batch)
    n = int(targets.numel())
    if n == 0:
        return hidden.sum() * 0.0, 0
    total = hidden.new_zeros(())
    for start in range(0, n, chunk):
        part_h, part_t = hidden[start : start + chunk], targets[start : start + chunk]
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_loss_sum, head, part_h, part_t, use_reentrant=False)
        else:
            total = total + _chunk_loss_sum(head, part_h, part_t)
    return total / n, n
