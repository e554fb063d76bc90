"""Reorder retrieved hits: MMR (relevance vs. diversity), at most N chunks per source, a
cross-encoder, or a reader LLM's yes/no relevance judgement.

Spec strings used by the CLI and `search(..., rerank=...)`: `mmr` or `mmr:0.7` (lambda),
`per-source` or `per-source:2` (chunks kept per source document), `cross-encoder:PATH` (any
sentence-transformers CrossEncoder directory), `llm` or `llm:MODEL`. Each name is a `reranker`
plugin (`lmfoundry.plugins`): its factory takes the text after the colon and checks it, so
`make_reranker` rejects a bad spec before anything is opened; a package can add its own.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lmfoundry import plugins
from lmfoundry.embed.sentence import embed_texts
from lmfoundry.errors import InvalidInputError
from lmfoundry.models.load import load_hf_model
from lmfoundry.plugins import require
from lmfoundry.types import Hit

if TYPE_CHECKING:
    import numpy as np

    from lmfoundry.rag.index import RagIndex

DEFAULT_MMR_LAMBDA = 0.5
DEFAULT_LLM = "smollm2-135m-instruct"
LLM_PROMPT = (
    "Document: {document}\nQuestion: {question}\nIs the document relevant to the question? Answer yes or no:"
)
_YES = (" yes", "yes", " Yes", "Yes")
_NO = (" no", "no", " No", "No")


def mmr(
    query: np.ndarray, hits: Sequence[Hit], vectors: np.ndarray, k: int, lam: float = DEFAULT_MMR_LAMBDA
) -> list[Hit]:
    """Maximal marginal relevance: greedily pick argmax lam*sim(q, d) - (1-lam)*max sim(d, picked).

    `vectors` are the hits' normalised embeddings (row i belongs to hits[i]). lam=1 keeps the
    relevance order; lam=0 maximises diversity. Returned scores are the MMR values at pick time.
    """
    import numpy as np

    if not 0.0 <= lam <= 1.0:
        raise InvalidInputError(f"MMR lambda must be in [0, 1], got {lam}")
    relevance = vectors @ query
    similarity = vectors @ vectors.T
    picked: list[int] = []
    scores: list[float] = []
    remaining = list(range(len(hits)))
    while remaining and len(picked) < k:
        redundancy = similarity[np.ix_(remaining, picked)].max(axis=1) if picked else np.zeros(len(remaining))
        values = lam * relevance[remaining] - (1.0 - lam) * redundancy
        best = int(np.argmax(values))
        picked.append(remaining.pop(best))
        scores.append(float(values[best]))
    return [Hit(hits[i].chunk, s) for i, s in zip(picked, scores, strict=True)]


def mmr_rerank(
    index: RagIndex, query: str, hits: Sequence[Hit], k: int, lam: float = DEFAULT_MMR_LAMBDA
) -> list[Hit]:
    if not hits:
        return []
    query_vector = embed_texts(index.embedder, [query], use_cache=False, progress=False)[0]
    vectors = index.store.vectors([h.chunk.chunk_id for h in hits])
    return mmr(query_vector, hits, vectors, k, lam)


@functools.lru_cache(maxsize=2)
def load_cross_encoder(name: str) -> Any:
    st = require("sentence_transformers", extra="rag", package="sentence-transformers")
    try:
        return st.CrossEncoder(name, device="cpu")
    except OSError as exc:
        raise InvalidInputError(f"cannot load cross-encoder {name!r}: {exc}") from exc


def cross_encoder_rerank(name: str, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
    """Score (query, chunk) pairs with a CrossEncoder; best first."""
    if not hits:
        return []
    scores = load_cross_encoder(name).predict([(query, h.chunk.text) for h in hits], show_progress_bar=False)
    order = sorted(range(len(hits)), key=lambda i: -float(scores[i]))
    return [Hit(hits[i].chunk, float(scores[i])) for i in order[:k]]


def _answer_token_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """First-token ids of the yes/no spellings; ids both share (e.g. a bare space) are dropped."""

    def first_ids(words: Sequence[str]) -> set[int]:
        ids = (tokenizer.encode(w, add_special_tokens=False) for w in words)
        return {seq[0] for seq in ids if seq}

    yes, no = first_ids(_YES), first_ids(_NO)
    yes, no = yes - no, no - yes
    if not yes or not no:
        raise InvalidInputError("the reader's tokenizer cannot tell 'yes' from 'no' by their first token")
    return sorted(yes), sorted(no)


def llm_relevance_scores(model: Any, tokenizer: Any, question: str, texts: Sequence[str]) -> list[float]:
    """P(yes) / (P(yes) + P(no)) for the next token after the relevance prompt, per text.

    Documents are truncated so the prompt fits the model's position limit.
    """
    import torch

    yes, no = _answer_token_ids(tokenizer)
    limit = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    overhead = len(
        tokenizer.encode(LLM_PROMPT.format(document="", question=question), add_special_tokens=True)
    )
    room = max(limit - overhead - 1, 1)
    scores = []
    for text in texts:
        doc_ids = tokenizer.encode(text, add_special_tokens=False)[:room]
        prompt = LLM_PROMPT.format(document=tokenizer.decode(doc_ids), question=question)
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"][:, -limit:]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1].float()
        probs = torch.softmax(logits, dim=-1)
        p_yes, p_no = float(probs[yes].sum()), float(probs[no].sum())
        scores.append(p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.5)
    return scores


def llm_rerank(model: Any, tokenizer: Any, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
    """Reorder by the reader's relevance probability (ties keep retrieval order)."""
    scores = llm_relevance_scores(model, tokenizer, query, [h.chunk.text for h in hits])
    order = sorted(range(len(hits)), key=lambda i: -scores[i])
    return [Hit(hits[i].chunk, scores[i]) for i in order[:k]]


@functools.lru_cache(maxsize=1)
def _load_reader(name: str) -> tuple[Any, Any]:
    """The reader model of the `llm` reranker, kept for the next query (one model at a time)."""
    return load_hf_model(name)


def per_source(hits: Sequence[Hit], k: int, limit: int = 1) -> list[Hit]:
    """The first k hits in rank order, keeping at most `limit` chunks of any one source.

    Field collapsing, as search engines do it: a long document that matches everywhere (the
    Python reference's `compound` topic holds `for`, `while`, `try`, ...) would otherwise fill
    the top k with its chunks and push out the short document that answers. Measured on the
    68-question Python-reference set: hybrid recall@5 0.838 -> 0.912 (docs/benchmarks-rag.md).
    """
    if limit < 1:
        raise InvalidInputError(f"per-source limit must be >= 1, got {limit}")
    counts: dict[str, int] = {}
    kept: list[Hit] = []
    for hit in hits:
        seen = counts.get(hit.chunk.source, 0)
        if seen < limit:
            counts[hit.chunk.source] = seen + 1
            kept.append(hit)
            if len(kept) == k:
                break
    return kept


class Reranker(Protocol):
    """Reorder retrieval candidates and keep the best k (what a `reranker` plugin factory returns)."""

    def __call__(self, index: RagIndex, query: str, hits: Sequence[Hit], k: int) -> list[Hit]: ...


def make_reranker(spec: str) -> Reranker:
    """The reranker a spec names (`mmr:0.7`, `per-source:2`, a plugin's `NAME[:ARG]`), checked now:
    a bad spec is an error before any store is opened or model loaded."""
    name, arg = plugins.parse_spec(spec)
    factory = plugins.get("reranker", name)
    reranker: Reranker = factory(arg)
    return reranker


def rerank(spec: str | Reranker, index: RagIndex, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
    """Apply a reranker, or the one a spec string names (see the module docstring)."""
    reranker = make_reranker(spec) if isinstance(spec, str) else spec
    return reranker(index, query, hits, k)


def _number(arg: str, default: float, kind: type, what: str, example: str) -> Any:
    try:
        return kind(arg) if arg else default
    except ValueError:
        raise InvalidInputError(f"invalid {what} {arg!r}: use {example}") from None


@dataclass(frozen=True)
class MMRReranker:
    lam: float = DEFAULT_MMR_LAMBDA

    def __call__(self, index: RagIndex, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        return mmr_rerank(index, query, hits, k, self.lam)


@dataclass(frozen=True)
class PerSourceReranker:
    limit: int = 1

    def __call__(self, index: RagIndex, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        return per_source(hits, k, self.limit)


@dataclass(frozen=True)
class CrossEncoderReranker:
    path: str

    def __call__(self, index: RagIndex, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        return cross_encoder_rerank(self.path, query, hits, k)


@dataclass(frozen=True)
class LLMReranker:
    model: str = DEFAULT_LLM

    def __call__(self, index: RagIndex, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        model, tokenizer = _load_reader(self.model)
        return llm_rerank(model, tokenizer, query, hits, k)


def mmr_reranker(arg: str) -> MMRReranker:
    """`mmr[:LAMBDA]`: relevance vs diversity, LAMBDA in [0, 1] (default 0.5)."""
    lam = _number(arg, DEFAULT_MMR_LAMBDA, float, "MMR lambda", "mmr:0.7")
    if not 0.0 <= lam <= 1.0:
        raise InvalidInputError(f"MMR lambda must be in [0, 1], got {lam}")
    return MMRReranker(lam)


def per_source_reranker(arg: str) -> PerSourceReranker:
    """`per-source[:N]`: at most N chunks of any one document (default 1)."""
    limit = _number(arg, 1, int, "per-source limit", "per-source:2")
    if limit < 1:
        raise InvalidInputError(f"per-source limit must be >= 1, got {limit}")
    return PerSourceReranker(limit)


def cross_encoder_reranker(arg: str) -> CrossEncoderReranker:
    """`cross-encoder:PATH`: a sentence-transformers CrossEncoder directory."""
    if not arg:
        raise InvalidInputError("name the cross-encoder: cross-encoder:PATH")
    return CrossEncoderReranker(arg)


def llm_reranker(arg: str) -> LLMReranker:
    """`llm[:MODEL]`: the reader's yes/no relevance probability (default the packaged model)."""
    return LLMReranker(arg or DEFAULT_LLM)
