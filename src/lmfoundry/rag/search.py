"""Search a store: retrieve candidates (dense, BM25 or both) and optionally rerank them down to k."""

from __future__ import annotations

from typing import Any

from lmfoundry.rag.index import RagIndex, open_index
from lmfoundry.rag.rerank import rerank as apply_rerank
from lmfoundry.rag.retrieve import retrieve
from lmfoundry.rag.stores.base import SearchFilter
from lmfoundry.types import Hit


def open_store(store: str | RagIndex) -> RagIndex:
    """The index itself, or the named store opened (the caller closes what it opened)."""
    return store if isinstance(store, RagIndex) else open_index(store)


def make_filter(
    source_prefix: str | None = None, metadata: dict[str, Any] | None = None
) -> SearchFilter | None:
    if not source_prefix and not metadata:
        return None
    return SearchFilter(source_prefix=source_prefix, metadata=dict(metadata or {}))


def search_index(
    index: RagIndex,
    query: str,
    k: int = 5,
    *,
    mode: str = "hybrid",
    rerank: str | None = None,
    where: Any = None,
) -> list[Hit]:
    """Retrieve (4k candidates when reranking) and optionally rerank down to k."""
    if isinstance(where, dict):
        where = make_filter(where.get("source_prefix"), where.get("metadata"))
    if not rerank:
        return retrieve(index, query, k=k, mode=mode, where=where)
    candidates = retrieve(index, query, k=max(4 * k, 20), mode=mode, where=where)
    return apply_rerank(rerank, index, query, candidates, k)


def search(
    store: str | RagIndex,
    query: str,
    k: int = 5,
    *,
    mode: str = "hybrid",
    rerank: str | None = None,
    where: Any = None,
) -> list[Hit]:
    """Top-k hits for `query` from a named store. `where` is a SearchFilter or
    {"source_prefix": ..., "metadata": {...}}."""
    index = open_store(store)
    try:
        return search_index(index, query, k, mode=mode, rerank=rerank, where=where)
    finally:
        if not isinstance(store, RagIndex):
            index.close()
