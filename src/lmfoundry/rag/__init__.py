"""Retrieval-augmented generation: load, chunk, embed, index, retrieve, rerank and read documents."""

from __future__ import annotations

from lmfoundry.rag.api import ask, index_paths, list_stores, search

__all__ = ["ask", "index_paths", "list_stores", "search"]
