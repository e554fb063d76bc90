"""Index documents (files, folders, `builtin:NAME` corpora) into a RAG store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmfoundry.pipeline.context import StageContext


@dataclass
class Options:
    paths: list[str] = field(default_factory=lambda: ["builtin:python-reference"])
    """Files, folders (relative to the pipeline file) or builtin:NAME corpora."""
    store: str = "docs"
    """RAG store name (`lmf rag stores`)."""
    backend: str | None = None
    """lancedb (default) | qdrant; fixed when the store is created."""
    embedder: str | None = None
    chunk_size: int | None = None
    overlap: int | None = None


def run(ctx: StageContext, options: Options) -> dict[str, Any]:
    from lmfoundry.rag.index import index_paths
    from lmfoundry.rag.load import BUILTIN_PREFIX

    paths = [p if p.startswith(BUILTIN_PREFIX) else str(ctx.path(p)) for p in options.paths]
    ctx.progress.total(len(paths), "sources")
    report = index_paths(
        paths, options.store, chunk_size=options.chunk_size, overlap=options.overlap,
        embedder=options.embedder, backend=options.backend, progress=False,
        on_source=lambda source: ctx.progress.note(source[-40:]),
    )  # fmt: skip
    ctx.progress.advance(len(paths))
    counts = {k: len(v) if isinstance(v, list) else v for k, v in report.to_dict().items() if k != "store"}
    return {"store": options.store, **counts}


def fresh(ctx: StageContext, outputs: dict[str, Any]) -> bool:
    from lmfoundry.rag.index import list_stores

    return any(s["name"] == outputs["store"] for s in list_stores())
