"""Per-request sampling for batched llama.cpp rows, the same chain `LlamaCppBackend.token_stream`
gets from `Llama.generate`: repeat penalty over the last 64 generated tokens, then greedy, or
top-k -> typical (off) -> top-p -> min-p -> temperature -> a draw seeded with the request's seed.

Why llama.cpp's own samplers and not `generate/sampling.py`: a request must get the same tokens
whether it was batched or served alone (`--max-batch 1`), greedy and seeded alike, and llama.cpp
applies temperature after truncation where our torch sampler applies it before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from lmfoundry.types import SamplingParams

PENALTY_LAST_N = 64
"""llama-cpp-python's `last_n_tokens_size` default, which the sequential path uses."""


class RowSampler:
    """One request's sampler chain (with its RNG and penalty history). `close()` frees it."""

    def __init__(self, params: SamplingParams, n_vocab: int) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self.argmax_only = params.greedy and params.repetition_penalty == 1.0
        """Greedy without penalties is a plain argmax (first maximum, as llama.cpp's greedy)."""
        chain = _internals.LlamaSampler()
        chain.add_penalties(n_vocab, PENALTY_LAST_N, params.repetition_penalty, 0.0, 0.0)
        if params.greedy:
            chain.add_greedy()
        else:
            chain.add_top_k(params.top_k)
            chain.add_typical(1.0, 1)
            chain.add_top_p(params.top_p, 1)
            chain.add_min_p(params.min_p, 1)
            chain.add_temp(params.temperature)
            seed = params.seed if params.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
            chain.add_dist(seed & 0xFFFFFFFF)
        self._chain = chain

    def sample(self, ctx: Any, index: int, scores: np.ndarray) -> int:
        """The token for llama.cpp output `index` of `ctx`, whose logits `scores` (a view) the
        caller may already have masked in place."""
        import llama_cpp

        if self.argmax_only:
            return int(scores.argmax())
        return int(llama_cpp.llama_sampler_sample(self._chain.sampler, ctx.ctx, index))

    def close(self) -> None:
        self._chain.close()
