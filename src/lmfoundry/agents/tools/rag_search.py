"""`rag_search`: search an lmfoundry RAG store and return the top chunks with their source ids,
so the model can answer from the documents and say where the answer came from."""

from __future__ import annotations

from typing import Any

from lmfoundry.agents.tools.base import Tool, ToolError, object_schema, require_str
from lmfoundry.errors import LmfError
from lmfoundry.rag.index import RagIndex, open_index
from lmfoundry.rag.search import search
from lmfoundry.types import Hit

MAX_CHUNK_CHARS = 600


def format_hits(hits: list[Hit]) -> str:
    """`[n] source: text` per hit, text squeezed to one line and cut."""
    if not hits:
        return "(no matching documents)"
    lines = []
    for rank, hit in enumerate(hits, 1):
        text = " ".join(hit.chunk.text.split())
        if len(text) > MAX_CHUNK_CHARS:
            text = text[:MAX_CHUNK_CHARS] + "..."
        lines.append(f"[{rank}] {hit.chunk.source}: {text}")
    return "\n".join(lines)


def rag_search(store: str | RagIndex, *, k: int = 3, mode: str = "hybrid") -> Tool:
    """The `rag_search` tool over a store (its name, opened now and kept open, or an open index)."""
    index = store if isinstance(store, RagIndex) else open_index(store)

    def run(query: Any, k: Any = k) -> str:
        if not isinstance(k, int) or not 1 <= k <= 10:
            raise ToolError(f"k must be an integer from 1 to 10, got {k!r}")
        try:
            return format_hits(search(index, require_str(query, "query"), k=k, mode=mode))
        except LmfError as err:
            raise ToolError(str(err)) from None

    return Tool(
        name="rag_search",
        description=f"Search the document store {index.name!r}; returns the best passages with their sources.",
        parameters=object_schema(
            {
                "query": {"type": "string", "description": "what to look for"},
                "k": {"type": "integer", "description": f"how many passages (1-10, default {k})"},
            },
            required=["query"],
        ),
        fn=run,
        close=None if isinstance(store, RagIndex) else index.close,
    )
