"""Prompt-lookup speculative decoding on llama.cpp, for greedy requests: draft the tokens that
followed the latest earlier occurrence of the context's last n-gram, feed the last token and the
draft in one `llama_decode`, keep the longest drafted prefix the model itself would have picked
(plus the model's own next token after it), and drop the KV of the rest.

Why our own loop rather than llama-cpp-python's `draft_model`: that path keeps the logits of every
prompt and drafted position (`logits_all`) and samples position by position in Python, and measured
0.35-1.03x of plain decoding here; this one asks llama.cpp for logits only where a draft is checked
and takes an argmax. Greedy only: the output is the model's greedy text by construction (a drafted
token is kept only if it is the argmax at its position), up to the rounding of a several-token
pass against a one-token pass, which the tests check is nil on float16 weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmfoundry.generate.llamacpp_batched import LlamaBatchedDecoder

MAX_NGRAM = 3
"""Longest n-gram matched (tried first; then shorter ones)."""
DRAFT_TOKENS = 4
"""Tokens drafted per pass at most."""


class NgramDrafter:
    """The context's n-grams (1..MAX_NGRAM) mapped to where the token after their latest
    occurrence sits, kept up to date as tokens are appended."""

    def __init__(self, context: list[int]) -> None:
        self.context: list[int] = []
        self._follows: dict[tuple[int, ...], int] = {}
        self.extend(context)

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            end = len(self.context)  # n-grams ending just before `token` now have a follower
            for n in range(1, MAX_NGRAM + 1):
                if end >= n:
                    self._follows[tuple(self.context[end - n : end])] = end
            self.context.append(token)

    def draft(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the longest matching n-gram's latest occurrence."""
        for n in range(MAX_NGRAM, 0, -1):
            start = self._follows.get(tuple(self.context[-n:])) if len(self.context) >= n else None
            if start is not None:
                return self.context[start : start + limit]
        return []


def greedy_stream(
    decoder: LlamaBatchedDecoder, prompt_ids: list[int], max_new_tokens: int, eos_ids: frozenset[int]
) -> Iterator[int]:
    """Greedy tokens for `prompt_ids` on `decoder` (one row, taken here and released at the end)."""
    import numpy as np

    key: Any = object()
    if not decoder.can_admit():
        raise RuntimeError("the prompt-lookup decoder's row is busy")
    try:
        token = int(np.argmax(decoder.prefill(key, prompt_ids)))
        drafter = NgramDrafter([*prompt_ids, token])
        produced = 1
        yield token
        while token not in eos_ids and produced < max_new_tokens:
            guess = drafter.draft(min(DRAFT_TOKENS, max_new_tokens - produced - 1))
            kept = len(decoder.rows[0].tokens)
            picks = [int(t) for t in np.argmax(decoder.feed([token, *guess]), axis=1)]
            accepted = 0
            while accepted < len(guess) and picks[accepted] == guess[accepted]:
                accepted += 1
            decoder.rewind(kept + 1 + accepted)  # the fed token and the accepted draft stay
            for token in [*guess[:accepted], picks[accepted]]:
                drafter.extend([token])
                produced += 1
                yield token
                if token in eos_ids or produced >= max_new_tokens:
                    return
    finally:
        decoder.remove({key})
