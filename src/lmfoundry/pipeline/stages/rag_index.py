"""Index documents (files, folders, `builtin:NAME` corpora) into a RAG store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.stage_kind import StageKind
from lmfoundry.rag.documents import BUILTIN_PREFIX
from lmfoundry.rag.index import index_paths, list_stores


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
    return any(s["name"] == outputs["store"] for s in list_stores())


KIND = StageKind(Options, run, fresh, summary=(__doc__ or "").strip().splitlines()[0])
