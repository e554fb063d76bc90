"""Citations a small reader can give: the ones it writes, a forced citation, or an attribution.

Small readers (SmolLM2-135M) rarely write `[0]` on their own, so `ask` has three modes:

- `model`: only the citations the model wrote (`[0]`, `[0, 2]`, `Document 1`).
- `auto` (default): the model's own citations when it wrote any; otherwise, unless it declined
  ("The context does not say."), the answer is *attributed* to the document that supports it
  best: the one whose embedding is closest to the answer's. Such a citation is marked
  `"attributed": true, "method": "similarity"` with the cosine as its score: the model did not
  write it. (Asking SmolLM2-135M itself which document its answer came from, by its next-token
  probabilities after "Source: Document", picked a wrong one for the `assert` question, so
  the embedder decides.)
- `forced`: the answer is made to begin with `According to Document`, the number is the
  reader's most probable one among the documents in the context (constrained decoding), and
  the rest of the answer is generated after it, so it is conditioned on the chosen document.
  Needs the model's logits (the transformers backend); elsewhere the answer is generated
  unforced.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmfoundry.embed.sentence import embed_texts
from lmfoundry.errors import InvalidInputError

if TYPE_CHECKING:
    from lmfoundry.embed.sentence import Embedder
    from lmfoundry.generate.engine import LoadedModel

CITE_MODES: tuple[str, ...] = ("auto", "model", "forced")
_BRACKETS = re.compile(r"\[([^\[\]]+)\]")
_DOC_WORD = re.compile(r"\bDocuments?\s+(\d+)", re.IGNORECASE)
FORCED_PREFIX = "According to Document"
ATTRIBUTION_CUE = "\n\nSource: Document"


@dataclass(frozen=True)
class Choice:
    """The document the reader's next-token probabilities picked, and its share of them."""

    document: int
    probability: float


def cited_labels(text: str) -> list[str]:
    """What a text cites, in order of first mention: the labels inside brackets (`[0]`, `[d1, d2]`,
    `[0; 2]`) and the numbers of `Document N` mentions. The one citation parser: the reader maps
    numbers to its documents, the evaluation metrics compare labels with relevant ids."""
    found: list[tuple[int, str]] = []
    for match in _BRACKETS.finditer(text):
        found.extend((match.start(), part.strip()) for part in re.split(r"[,;]", match.group(1)))
    found.extend((match.start(), match.group(1)) for match in _DOC_WORD.finditer(text))
    return list(dict.fromkeys(label for _, label in sorted(found, key=lambda pair: pair[0]) if label))


def check_mode(mode: str) -> str:
    if mode not in CITE_MODES:
        raise InvalidInputError(f"unknown citation mode {mode!r} (known: {', '.join(CITE_MODES)})")
    return mode


def declined(answer: str, no_answer: str) -> bool:
    """Did the reader say the context does not hold the answer?"""
    text = " ".join(answer.lower().split())
    return not text or no_answer.lower().rstrip(".") in text


def raw_ids(model: LoadedModel, text: str) -> list[int]:
    """Token ids of `text` as a continuation (no BOS or other special tokens)."""
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise InvalidInputError(f"the {model.backend} backend exposes no tokenizer for forced citations")
    return list(tokenizer.encode(text, add_special_tokens=False))


def number_tokens(model: LoadedModel, cue: str, n_documents: int) -> tuple[str, dict[int, int]]:
    """(cue extended by what every number shares, {document: its distinguishing first token}).

    Numbers are written after the cue as " 0", " 1", ...; tokens all of them start with (a bare
    space in some vocabularies) move into the cue. Documents whose first distinguishing token is
    shared with another number (10 and 1 in digit-split vocabularies) are left out.
    """
    if n_documents < 1:
        return cue, {}
    base = raw_ids(model, cue)
    suffixes = {i: raw_ids(model, f"{cue} {i}")[len(base) :] for i in range(n_documents)}
    shared = 0
    shortest = min(len(s) for s in suffixes.values())
    while shared < shortest - 1 and len({s[shared] for s in suffixes.values()}) == 1:
        shared += 1
    first = {i: s[shared] for i, s in suffixes.items() if len(s) > shared}
    counts: dict[int, int] = {}
    for token in first.values():
        counts[token] = counts.get(token, 0) + 1
    extended = cue + (model.tokenizer.decode(suffixes[0][:shared]) if shared else "")
    return extended, {i: t for i, t in first.items() if counts[t] == 1}


def next_token_logits(model: LoadedModel, ids: Sequence[int]) -> Any:
    """Logits of the token after `ids` (a 1-D tensor), or None when the backend hides them."""
    network = getattr(model.runtime, "model", None)
    if network is None or not callable(network):
        return None
    import torch

    limit = model.context_length
    with torch.inference_mode():
        out = network(input_ids=torch.tensor([list(ids)[-limit:]]), logits_to_keep=1)
    return out.logits[0, -1].float()


def choose_document(
    model: LoadedModel, prefix_ids: Sequence[int], candidates: dict[int, int]
) -> Choice | None:
    """The candidate document whose number token is most probable after `prefix_ids`; its
    probability is renormalised over the candidates. None without logits or candidates."""
    if not candidates:
        return None
    logits = next_token_logits(model, prefix_ids)
    if logits is None:
        return None
    import torch

    documents = sorted(candidates)
    probs = torch.softmax(logits[[candidates[d] for d in documents]], dim=-1)
    best = int(torch.argmax(probs))
    return Choice(documents[best], round(float(probs[best]), 4))


def attribute_by_similarity(embedder: Embedder, answer: str, texts: Sequence[str]) -> Choice | None:
    """The document whose embedding is closest to the answer's (cosine; its value as the score)."""
    if not texts:
        return None

    vectors = embed_texts(embedder, [answer, *texts], use_cache=False, progress=False)
    similarity = vectors[1:] @ vectors[0]
    best = int(similarity.argmax())
    return Choice(best, round(float(similarity[best]), 4))


def forced_answer(
    model: LoadedModel, prompt_ids: Sequence[int], n_documents: int, generate: Callable[[list[int]], str]
) -> tuple[str, Choice | None]:
    """An answer that starts `According to Document N`, N chosen by the reader among the
    documents; `generate(ids)` continues the text after those prompt ids."""
    cue, candidates = number_tokens(model, FORCED_PREFIX, n_documents)
    cue_ids = list(prompt_ids) + raw_ids(model, cue)
    choice = choose_document(model, cue_ids, candidates)
    if choice is None:
        return generate(list(prompt_ids)), None
    start = f"{FORCED_PREFIX} {choice.document}"
    return start + generate(list(prompt_ids) + raw_ids(model, start)), choice


def citation(number: int, source: str, method: str, score: float | None = None) -> dict[str, Any]:
    """One citation: `attributed` is true when the model did not write it itself."""
    out: dict[str, Any] = {
        "document": number,
        "source": source,
        "attributed": method == "similarity",
        "method": method,
    }
    if score is not None:
        out["score"] = score
    return out
