"""Pure functions that turn next-token logits into a token id (torch tensors, no model state).

Order follows common practice (llama.cpp, transformers): repetition penalty on raw logits, then
temperature, then top-k / top-p / min-p truncation, then a draw from a seeded generator.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from lmfoundry.types import SamplingParams


def apply_repetition_penalty(
    logits: torch.Tensor, previous_ids: Iterable[int], penalty: float
) -> torch.Tensor:
    """CTRL-style penalty: positive logits of seen tokens are divided, negative ones multiplied."""
    import torch

    if penalty == 1.0:
        return logits
    ids = torch.tensor(sorted(set(previous_ids)), dtype=torch.long)
    if ids.numel() == 0:
        return logits
    out = logits.clone()
    seen = out[..., ids]
    out[..., ids] = torch.where(seen > 0, seen / penalty, seen * penalty)
    return out


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    import torch

    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability mass reaches `p`."""
    import torch

    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= p  # mass before this token
    remove_sorted[..., 0] = False  # the most likely token always survives, however small p is
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def filter_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Drop tokens whose probability is below `min_p` times the most likely token's."""
    import torch

    if min_p <= 0.0:
        return logits
    probs = torch.softmax(logits, dim=-1)
    threshold = probs.max(dim=-1, keepdim=True).values * min_p
    return logits.masked_fill(probs < threshold, float("-inf"))


def sample_next(
    logits: torch.Tensor,
    params: SamplingParams,
    previous_ids: Iterable[int],
    generator: torch.Generator | None,
) -> int:
    """Choose the next token id from a 1-D logits vector."""
    import torch

    logits = apply_repetition_penalty(logits.float(), previous_ids, params.repetition_penalty)
    if params.greedy:
        return int(torch.argmax(logits).item())
    logits = logits / params.temperature
    logits = filter_min_p(filter_top_p(filter_top_k(logits, params.top_k), params.top_p), params.min_p)
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator).item())


def make_generator(seed: int | None) -> torch.Generator:
    import torch

    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else int(torch.seed() % (2**63)))
    return generator
