"""Token log-probabilities for `/v1/completions` with `echo` and `logprobs` (the legacy OpenAI
`logprobs` object: `tokens`, `token_logprobs`, `top_logprobs`, `text_offset`).

Why: evaluation harnesses (lm-evaluation-harness's `local-completions`) score multiple-choice and
perplexity tasks by sending context + continuation with `echo=true, logprobs=1, max_tokens=1` and
summing the echoed prompt tokens' log-probabilities.

The values are the model's own log-softmax (before temperature and truncation), from one
teacher-forced forward pass over prompt + generated tokens, run on the scheduler thread between
decode steps (the model is never used by two threads at once): the transformers model's forward
pass, or on llama.cpp a pass over a sequence the batch decoder keeps free for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.generate.batched import is_peft
from lmfoundry.models.adapters import BASE_ADAPTER
from lmfoundry.serve.llama_scheduler import LlamaBatchScheduler
from lmfoundry.serve.scheduler import BatchScheduler

if TYPE_CHECKING:
    import numpy as np

    from lmfoundry.serve.service import ServedModel


@dataclass
class Scores:
    """Per position i: log P(token_i | tokens before i) and the top alternatives there (None at 0)."""

    token_logprobs: list[float | None]
    top: list[dict[int, float] | None]


def score(served: ServedModel, ids: list[int], adapter: str | None, top_n: int) -> Scores:
    """Teacher-forced log-probabilities of `ids` (blocking: call it from a worker thread)."""

    scheduler = served.scheduler
    if isinstance(scheduler, BatchScheduler):
        logits = scheduler.call(lambda: _forward(scheduler.model, ids, adapter))
    elif isinstance(scheduler, LlamaBatchScheduler):
        logits = scheduler.call(lambda: scheduler.decoder.score(ids))[:-1]
    else:
        raise InvalidInputError(
            "echo with logprobs needs a batching server (the transformers or llama.cpp backend)"
        )
    return _scores(logits, ids, top_n)


def _forward(model: Any, ids: list[int], adapter: str | None) -> np.ndarray:
    """Logits predicting ids[1:] ([len - 1, vocab]) from one forward pass."""
    import torch

    kwargs = {"adapter_names": [adapter or BASE_ADAPTER]} if is_peft(model) else {}
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids]), **kwargs).logits[0, :-1].float().numpy()  # type: ignore[no-any-return]


def _scores(logits: np.ndarray, ids: list[int], top_n: int) -> Scores:
    """Log-softmax of logits predicting ids[1:], the chosen tokens' values and the top_n others."""
    import numpy as np

    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    logprobs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    targets = np.asarray(ids[1:])
    picked = logprobs[np.arange(len(targets)), targets].tolist()
    k = max(1, min(top_n, logprobs.shape[-1]))
    best = np.argpartition(-logprobs, k - 1, axis=1)[:, :k]
    top: list[dict[int, float] | None] = [None]
    for position, token in enumerate(ids[1:]):
        order = best[position][np.argsort(-logprobs[position, best[position]], kind="stable")]
        alternatives = {int(t): float(logprobs[position, t]) for t in order}
        alternatives[token] = picked[position]  # the chosen token is always listed, as OpenAI does
        top.append(alternatives)
    return Scores([None, *picked], top)


def kept_tokens(decode: Any, generated: list[int], text: str) -> list[int]:
    """The generated tokens that make up `text` (a matched stop string may end mid-way)."""
    if not text:
        return []
    for count in range(1, len(generated) + 1):
        if len(decode(generated[:count])) >= len(text):
            return generated[:count]
    return generated


def logprobs_object(
    decode: Any, ids: list[int], scores: Scores, first: int, text_before: str
) -> dict[str, Any]:
    """The OpenAI `logprobs` object for `ids[first:]`; offsets count from the start of the echoed
    prompt (`text_before` is the text that precedes `ids[first]`)."""
    tokens, offsets = [], []
    for i in range(first, len(ids)):
        tokens.append(decode([ids[i]]))
        offsets.append(len(text_before) + len(decode(ids[first:i])))
    return {
        "tokens": tokens,
        "token_logprobs": scores.token_logprobs[first:],
        "top_logprobs": [
            None if top is None else {decode([t]): lp for t, lp in top.items()} for top in scores.top[first:]
        ],
        "text_offset": offsets,
    }
