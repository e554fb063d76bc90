"""Find the chunks that answer a query: dense (vectors), BM25 (words), or both fused (RRF).

Hybrid retrieval fuses the dense and BM25 rankings with reciprocal rank fusion
(score = sum over rankings of 1 / (60 + rank)), which needs no score calibration between the
two. The BM25 index is rebuilt from the stored chunk texts on first use in a process and kept
in memory while the store's content is unchanged (milliseconds for a few thousand chunks).

Document-length prior: a long document has many chunks, so it has many chances to hold the
best-matching chunk by accident, and a hub page that touches every subject (the reference's
`compound`, `types`, `specialnames`) outranks the short page about the one subject asked. Each
candidate's score is lowered by `length_prior * ln(chunks of its source)` before ranking (for
BM25, times the best score and BM25_PRIOR_SCALE, as its scores have no fixed scale and spread
wider than cosines). A one-chunk document keeps its score. 0 turns it off.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from lmfoundry.embed.sentence import embed_texts
from lmfoundry.errors import InvalidInputError
from lmfoundry.plugins import require
from lmfoundry.rag.stores.base import SearchFilter
from lmfoundry.types import Chunk, Hit

if TYPE_CHECKING:
    from lmfoundry.rag.index import RagIndex

Mode = Literal["dense", "bm25", "hybrid"]
MODES: tuple[str, ...] = ("dense", "bm25", "hybrid")
RRF_K = 60
LENGTH_PRIOR = 0.015
"""Default strength of the document-length prior (see the module docstring): on the bundled
Python reference, the largest of 0.005-0.03 with no measurable cost on queries drawn evenly from
all chunks (long documents included); it raised recall@1 on the 46 training questions of the
hand-written set, and on its 22 held-out ones (docs/benchmarks-rag.md, run of 2026-12-08)."""
BM25_PRIOR_SCALE = 4.0
_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    }
)
"""English stop words left out of BM25 (the list bm25s uses)."""
_BM25_CACHE: dict[str, tuple[tuple[Any, ...], Any, list[Chunk]]] = {}


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased words without English stop words (BM25's vocabulary)."""
    return [w for w in (m.group().lower() for m in _WORD.finditer(text)) if w not in STOPWORDS]


def source_sizes(index: RagIndex) -> dict[str, int]:
    """Chunks per source, from the store's source records."""
    return {source: record.n_chunks for source, record in index.store.sources().items()}


def apply_length_prior(
    hits: Sequence[Hit], sizes: dict[str, int], strength: float, relative: bool
) -> list[Hit]:
    """The hits rescored `score - unit * strength * ln(chunks of the source)`, best first (ties keep
    their order). `unit` is 1 (cosines), or the best score when `relative` (BM25, whose scale
    depends on the query): the same order as dividing every score by the best one, while a
    one-chunk document keeps its score in BM25's own units."""
    if not hits:
        return []
    top = max(h.score for h in hits) if relative else 1.0
    unit = top if top > 0 else 1.0
    rescored = [
        Hit(h.chunk, h.score - unit * strength * math.log(max(sizes.get(h.chunk.source, 1), 1))) for h in hits
    ]
    return sorted(rescored, key=lambda h: -h.score)


def _pool(k: int, length_prior: float) -> int:
    """Candidates to fetch: k, or 4k (at least 20) when the prior may reorder them."""
    return max(4 * k, 20) if length_prior else k


def dense_search(
    index: RagIndex, query: str, k: int, where: SearchFilter | None = None, length_prior: float = 0.0
) -> list[Hit]:
    """Top-k chunks by cosine similarity between the query and chunk embeddings (minus the
    document-length prior, when given)."""
    hits = _dense_ranked(index, query, _pool(k, length_prior), where)
    if length_prior:
        hits = apply_length_prior(hits, source_sizes(index), length_prior, relative=False)
    return hits[:k]


def _dense_ranked(index: RagIndex, query: str, k: int, where: SearchFilter | None) -> list[Hit]:
    vector = embed_texts(index.embedder, [query], use_cache=False, progress=False)[0]
    return [Hit(chunk, score) for chunk, score in index.store.search(vector, k, where)]


def _bm25_index(index: RagIndex) -> tuple[Any, list[Chunk]]:
    records = index.store.sources()
    key = (index.store.count(), tuple(sorted((s, r.hash) for s, r in records.items())))
    cached = _BM25_CACHE.get(str(index.path))
    if cached and cached[0] == key:
        return cached[1], cached[2]
    bm25s = require("bm25s", extra="rag")
    chunks = index.store.chunks()
    retriever = bm25s.BM25()
    if chunks:
        retriever.index([bm25_tokens(c.text) for c in chunks], show_progress=False)
    _BM25_CACHE[str(index.path)] = (key, retriever, chunks)
    return retriever, chunks


def bm25_search(
    index: RagIndex, query: str, k: int, where: SearchFilter | None = None, length_prior: float = 0.0
) -> list[Hit]:
    """Top-k chunks by BM25 over their words; chunks sharing no word with the query are left out.
    With a length prior, scores are lowered by `best score * BM25_PRIOR_SCALE * length_prior *
    ln(chunks of the source)`."""
    hits = _bm25_ranked(index, query, _pool(k, length_prior), where)
    if length_prior:
        hits = apply_length_prior(hits, source_sizes(index), BM25_PRIOR_SCALE * length_prior, relative=True)
    return hits[:k]


def _bm25_ranked(index: RagIndex, query: str, k: int, where: SearchFilter | None) -> list[Hit]:
    retriever, chunks = _bm25_index(index)
    tokens = bm25_tokens(query)
    if not chunks or not tokens:
        return []
    import numpy as np

    scores = np.asarray(retriever.get_scores(tokens), dtype=np.float64)
    candidates = np.flatnonzero(scores > 0)
    if where is not None:
        candidates = np.array([i for i in candidates if where.matches(chunks[i])], dtype=np.int64)
    if len(candidates) > k:  # keep everything scoring at least the k-th best (ties stay exact)
        kth = np.partition(scores[candidates], len(candidates) - k)[len(candidates) - k]
        candidates = candidates[scores[candidates] >= kth]
    ranked = sorted(candidates.tolist(), key=lambda i: (-float(scores[i]), chunks[i].chunk_id))
    return [Hit(chunks[i], float(scores[i])) for i in ranked[:k]]


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score(id) = sum 1 / (k + rank), rank starting at 1; best first."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def hybrid_search(
    index: RagIndex,
    query: str,
    k: int,
    where: SearchFilter | None = None,
    candidates: int | None = None,
    length_prior: float = 0.0,
) -> list[Hit]:
    """Dense and BM25 candidates (default 4k each, at least 20; the length prior reorders each
    list before the fusion) fused with RRF (k=60)."""
    n = candidates or max(4 * k, 20)
    dense = _dense_ranked(index, query, n, where)
    sparse = _bm25_ranked(index, query, n, where)
    if length_prior:
        sizes = source_sizes(index)
        dense = apply_length_prior(dense, sizes, length_prior, relative=False)
        sparse = apply_length_prior(sparse, sizes, BM25_PRIOR_SCALE * length_prior, relative=True)
    by_id = {h.chunk.chunk_id: h.chunk for h in dense + sparse}
    fused = reciprocal_rank_fusion([[h.chunk.chunk_id for h in dense], [h.chunk.chunk_id for h in sparse]])
    return [Hit(by_id[cid], score) for cid, score in fused[:k]]


def retrieve(
    index: RagIndex,
    query: str,
    k: int = 5,
    mode: str = "hybrid",
    where: SearchFilter | None = None,
    length_prior: float = LENGTH_PRIOR,
) -> list[Hit]:
    """Top-k hits for `query` with the chosen retrieval mode and document-length prior."""
    if k < 1:
        raise InvalidInputError(f"k must be >= 1, got {k}")
    if not query.strip():
        raise InvalidInputError("the query is empty")
    if length_prior < 0:
        raise InvalidInputError(f"the length prior must be >= 0, got {length_prior}")
    if mode == "dense":
        return dense_search(index, query, k, where, length_prior)
    if mode == "bm25":
        return bm25_search(index, query, k, where, length_prior)
    if mode == "hybrid":
        return hybrid_search(index, query, k, where, length_prior=length_prior)
    raise InvalidInputError(f"unknown retrieval mode {mode!r} (known: {', '.join(MODES)})")
