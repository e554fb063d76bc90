"""Retrieval-augmented generation: load, chunk, embed, index, retrieve, rerank and read documents."""

from __future__ import annotations

from lmfoundry.rag.answer import Answer, ask
from lmfoundry.rag.index import IndexReport, index_paths, list_stores
from lmfoundry.rag.search import search
from lmfoundry.rag.stores.base import SearchFilter

__all__ = ["Answer", "IndexReport", "SearchFilter", "ask", "index_paths", "list_stores", "search"]
