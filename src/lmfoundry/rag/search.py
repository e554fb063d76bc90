"""Search a store: retrieve candidates (dense, BM25 or both) and optionally rerank them down to k."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from lmfoundry.rag.index import RagIndex, open_index
from lmfoundry.rag.rerank import Reranker
from lmfoundry.rag.rerank import rerank as apply_rerank
from lmfoundry.rag.retrieve import LENGTH_PRIOR, retrieve
from lmfoundry.rag.stores.base import SearchFilter
from lmfoundry.types import Hit


@contextlib.contextmanager
def opened(store: str | RagIndex) -> Iterator[RagIndex]:
    """The index itself, or the named store opened for the block and closed after it."""
    if isinstance(store, RagIndex):
        yield store
        return
    index = open_index(store)
    try:
        yield index
    finally:
        index.close()


def make_filter(
    source_prefix: str | None = None, metadata: dict[str, Any] | None = None
) -> SearchFilter | None:
    if not source_prefix and not metadata:
        return None
    return SearchFilter(source_prefix=source_prefix, metadata=dict(metadata or {}))


def search(
    store: str | RagIndex,
    query: str,
    k: int = 5,
    *,
    mode: str = "hybrid",
    rerank: str | Reranker | None = None,
    where: Any = None,
    length_prior: float = LENGTH_PRIOR,
) -> list[Hit]:
    """Top-k hits for `query` from a store (its name, or an open index). With a reranker, 4k
    candidates are retrieved and reranked down to k. `where` is a SearchFilter or
    {"source_prefix": ..., "metadata": {...}}; `length_prior` is `rag.retrieve`'s document-length
    prior (0 turns it off)."""
    if isinstance(where, dict):
        where = make_filter(where.get("source_prefix"), where.get("metadata"))
    with opened(store) as index:
        if not rerank:
            return retrieve(index, query, k=k, mode=mode, where=where, length_prior=length_prior)
        candidates = retrieve(
            index, query, k=max(4 * k, 20), mode=mode, where=where, length_prior=length_prior
        )
        return apply_rerank(rerank, index, query, candidates, k)
