"""Find the chunks that answer a query: dense (vectors), BM25 (words), or both fused (RRF).

Hybrid retrieval fuses the dense and BM25 rankings with reciprocal rank fusion
(score = sum over rankings of 1 / (60 + rank)), which needs no score calibration between the
two. The BM25 index is rebuilt from the stored chunk texts on first use in a process and kept
in memory while the store's content is unchanged (milliseconds for a few thousand chunks).
"""

from __future__ import annotations

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


def dense_search(index: RagIndex, query: str, k: int, where: SearchFilter | None = None) -> list[Hit]:
    """Top-k chunks by cosine similarity between the query and chunk embeddings."""

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


def bm25_search(index: RagIndex, query: str, k: int, where: SearchFilter | None = None) -> list[Hit]:
    """Top-k chunks by BM25 over their words; chunks sharing no word with the query are left out."""
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
    index: RagIndex, query: str, k: int, where: SearchFilter | None = None, candidates: int | None = None
) -> list[Hit]:
    """Dense and BM25 candidates (default 4k each, at least 20) fused with RRF (k=60)."""
    n = candidates or max(4 * k, 20)
    dense = dense_search(index, query, n, where)
    sparse = bm25_search(index, query, n, where)
    by_id = {h.chunk.chunk_id: h.chunk for h in dense + sparse}
    fused = reciprocal_rank_fusion([[h.chunk.chunk_id for h in dense], [h.chunk.chunk_id for h in sparse]])
    return [Hit(by_id[cid], score) for cid, score in fused[:k]]


def retrieve(
    index: RagIndex, query: str, k: int = 5, mode: str = "hybrid", where: SearchFilter | None = None
) -> list[Hit]:
    """Top-k hits for `query` with the chosen retrieval mode."""
    if k < 1:
        raise InvalidInputError(f"k must be >= 1, got {k}")
    if not query.strip():
        raise InvalidInputError("the query is empty")
    if mode == "dense":
        return dense_search(index, query, k, where)
    if mode == "bm25":
        return bm25_search(index, query, k, where)
    if mode == "hybrid":
        return hybrid_search(index, query, k, where)
    raise InvalidInputError(f"unknown retrieval mode {mode!r} (known: {', '.join(MODES)})")
