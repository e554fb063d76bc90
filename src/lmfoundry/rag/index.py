"""Named stores under `$LMF_HOME/rag/<name>` and incremental indexing into them.

A store is a folder with `store.json` (backend, embedder, chunking settings) and the backend's
data. `index_paths` adds new and changed sources (by content hash) and removes deleted ones.
Crash safety: per source, the old hash record is removed first, then its chunks are replaced in
one write, and the new record is written last. A killed run therefore leaves records that only
describe complete chunks; the next run re-indexes unrecorded sources and removes orphan chunks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry import plugins
from lmfoundry.embed.sentence import DEFAULT_EMBEDDER, Embedder, embed_texts, load_embedder
from lmfoundry.errors import InvalidInputError
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.paths import lmf_home
from lmfoundry.rag.chunk import chunk_document, default_chunk_size, default_overlap
from lmfoundry.rag.documents import BUILTIN_PREFIX, Document, load_origin, origins
from lmfoundry.rag.headers import contextual_text
from lmfoundry.rag.stores.base import SourceRecord, VectorStore, metadata_to_json
from lmfoundry.types import Chunk

DEFAULT_BACKEND = "lancedb"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class StoreConfig:
    """Settings fixed when a store is created (chunking may change; it re-chunks everything)."""

    backend: str
    embedder: str
    dimension: int
    chunk_size: int
    overlap: int
    tokenizer: str | None = None
    """Tokenizer that counts chunk sizes (None = the embedder's own)."""
    headers: bool = False
    """Embed each chunk with its contextual header (document title > section path) in front."""


@dataclass
class RagIndex:
    """An open store: its settings, its backend, and (loaded on first use) its embedder."""

    name: str
    path: Path
    config: StoreConfig
    store: VectorStore
    _embedder: Embedder | None = field(default=None, repr=False)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(
                None if self.config.embedder == DEFAULT_EMBEDDER else self.config.embedder
            )
        return self._embedder

    def close(self) -> None:
        self.store.close()


@dataclass
class IndexReport:
    store: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    chunks_written: int = 0
    texts_embedded: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stores_root() -> Path:
    return lmf_home() / "rag"


def store_path(name: str) -> Path:
    if not _NAME.match(name):
        raise InvalidInputError(f"invalid store name {name!r}: use letters, digits, '.', '_' and '-'")
    return stores_root() / name


def list_stores() -> list[dict[str, Any]]:
    """Every store under $LMF_HOME/rag with its settings."""
    root = stores_root()
    out = []
    for config_file in sorted(root.glob("*/store.json")) if root.is_dir() else []:
        out.append({"name": config_file.parent.name, **json.loads(config_file.read_text(encoding="utf-8"))})
    return out


def _read_config(path: Path) -> StoreConfig | None:
    config_file = path / "store.json"
    if not config_file.is_file():
        return None
    return StoreConfig(**json.loads(config_file.read_text(encoding="utf-8")))


def open_index(name: str, *, embedder: Embedder | None = None) -> RagIndex:
    """Open an existing store (the embedder is loaded lazily unless given)."""
    path = store_path(name)
    config = _read_config(path)
    if config is None:
        known = (
            ", ".join(s["name"] for s in list_stores()) or "none yet: run `lmf rag index PATH --store NAME`"
        )
        raise InvalidInputError(f"no RAG store named {name!r} (stores: {known})")
    store = plugins.get("vector_store", config.backend)(path, config.dimension)
    return RagIndex(name, path, config, store, embedder)


def _check_compatible(current: StoreConfig | None, embedder_name: str, backend: str | None) -> None:
    """An existing store keeps its backend and embedder (vectors of two models do not mix)."""
    if current and backend and backend != current.backend:
        raise InvalidInputError(
            f"store uses backend {current.backend!r}, not {backend!r}: pick another store name"
        )
    if current and embedder_name != current.embedder:
        raise InvalidInputError(
            f"store was built with embedder {current.embedder!r}, not {embedder_name!r}: pick another store name"
        )


def _new_config(
    current: StoreConfig | None,
    embedder: Embedder,
    embedder_name: str,
    backend: str | None,
    chunk_size: int | None,
    overlap: int | None,
    tokenizer: str | None,
    headers: bool | None = None,
) -> StoreConfig:
    _check_compatible(current, embedder_name, backend)
    special = int(embedder.tokenizer.num_special_tokens_to_add()) if tokenizer is None else 0
    size = chunk_size or (
        current.chunk_size if current else default_chunk_size(embedder.max_seq_length, special)
    )
    lap = overlap if overlap is not None else (current.overlap if current else default_overlap(size))
    return StoreConfig(
        backend=backend or (current.backend if current else DEFAULT_BACKEND),
        embedder=embedder_name,
        dimension=embedder.dimension,
        chunk_size=size,
        overlap=lap,
        tokenizer=tokenizer if tokenizer is not None else (current.tokenizer if current else None),
        headers=headers if headers is not None else (current.headers if current else False),
    )


def create_or_open(
    name: str,
    *,
    embedder: str | Embedder | None = None,
    backend: str | None = None,
    chunk_size: int | None = None,
    overlap: int | None = None,
    tokenizer: str | None = None,
    headers: bool | None = None,
) -> RagIndex:
    """Open `name`, creating it (or updating its chunking or header settings) as needed."""
    path = store_path(name)
    current = _read_config(path)
    model: Embedder
    if isinstance(embedder, str) or embedder is None:
        embedder_name = embedder or (current.embedder if current else DEFAULT_EMBEDDER)
        _check_compatible(current, embedder_name, backend)  # before loading anything
        model = load_embedder(None if embedder_name == DEFAULT_EMBEDDER else embedder_name)
    else:
        model, embedder_name = embedder, embedder.model_id
    config = _new_config(current, model, embedder_name, backend, chunk_size, overlap, tokenizer, headers)
    store_factory = plugins.get("vector_store", config.backend)  # unknown: an error naming the known ones
    if config != current:
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path / "store.json", json.dumps(asdict(config), indent=2))
    return RagIndex(name, path, config, store_factory(path, config.dimension), model)


def _chunk_tokenizer(index: RagIndex) -> Any:
    if index.config.tokenizer is None:
        return index.embedder.tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(index.config.tokenizer)


def document_hash(doc: Document, config: StoreConfig) -> str:
    """Changes when the text, the metadata, the chunking or the header settings change."""
    settings = f"{config.chunk_size}:{config.overlap}:{config.tokenizer}" + (
        ":headers" if config.headers else ""
    )
    payload = "\x00".join([settings, doc.text, metadata_to_json(doc.metadata)])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _under(origin: str, spec: str) -> bool:
    """Does `origin` belong to what the path spec covers (for deletion)?"""
    if spec.startswith(BUILTIN_PREFIX):
        return origin == spec
    root = str(Path(spec).expanduser().resolve())
    return origin == root or origin.startswith(root.rstrip(os.sep) + os.sep)


def index_paths(
    paths: Iterable[str | Path],
    store_name: str,
    *,
    chunk_size: int | None = None,
    overlap: int | None = None,
    embedder: str | Embedder | None = None,
    backend: str | None = None,
    tokenizer: str | None = None,
    headers: bool | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    progress: bool = True,
    on_source: Callable[[str], None] | None = None,
) -> IndexReport:
    """Bring store `store_name` up to date with the documents under `paths`."""
    specs = [str(p) for p in paths]
    if not specs:
        raise InvalidInputError("nothing to index: give at least one file, directory or builtin:NAME")
    all_origins = list(dict.fromkeys(o for spec in specs for o in origins(spec, include, exclude)))
    index = create_or_open(
        store_name,
        embedder=embedder,
        backend=backend,
        chunk_size=chunk_size,
        overlap=overlap,
        tokenizer=tokenizer,
        headers=headers,
    )
    report = IndexReport(store=store_name)
    try:
        records = index.store.sources()
        _remove_orphans(index.store, records)
        tok = _chunk_tokenizer(index)
        seen: set[str] = set()
        counter_before = getattr(index.embedder, "texts_encoded", 0)
        with _Progress(progress, len(all_origins)) as bar:
            for origin in all_origins:
                docs = load_origin(origin)
                seen.update(d.source for d in docs)
                changed = [
                    d
                    for d in docs
                    if (r := records.get(d.source)) is None or r.hash != document_hash(d, index.config)
                ]
                report.unchanged += len(docs) - len(changed)
                _write_documents(index, tok, origin, changed, records, report, bar.embedded, on_source)
                bar.advance()
        for source, record in records.items():
            if source not in seen and any(_under(record.origin, spec) for spec in specs):
                report.removed.append(source)
        index.store.delete_sources(report.removed)
        if report.added or report.updated or report.removed:
            compact = getattr(index.store, "compact", None)
            if compact:
                compact()
        report.texts_embedded = getattr(index.embedder, "texts_encoded", 0) - counter_before
    finally:
        index.close()
    return report


def with_header(doc: Document, chunk: Chunk) -> Chunk:
    """The chunk with its contextual header in `metadata["header"]` (see `rag.headers`)."""
    header = contextual_text(doc, chunk).split("\n", 1)[0]
    return dataclasses.replace(chunk, metadata={**chunk.metadata, "header": header})


def embedded_text(chunk: Chunk) -> str:
    """What the embedder reads for a chunk: its header line (when it has one), then its text."""
    header = chunk.metadata.get("header")
    return f"{header}\n{chunk.text}" if isinstance(header, str) and header else chunk.text


def _remove_orphans(store: VectorStore, records: dict[str, SourceRecord]) -> None:
    """Chunks without a record were left by an interrupted run: drop them (re-run re-adds)."""
    store.delete_sources([s for s in store.chunk_sources() if s not in records])


def _write_documents(
    index: RagIndex,
    tokenizer: Any,
    origin: str,
    docs: list[Document],
    records: dict[str, SourceRecord],
    report: IndexReport,
    on_embedded: Callable[[int], None],
    on_source: Callable[[str], None] | None,
) -> None:
    """Chunk and embed the changed documents of one origin, then write them: records out, chunks
    replaced in one write, records in (so records only ever describe complete chunks)."""
    if not docs:
        return
    cfg = index.config
    chunk_lists = [chunk_document(d, tokenizer, cfg.chunk_size, cfg.overlap) for d in docs]
    if cfg.headers:
        chunk_lists = [
            [with_header(d, c) for c in chunks] for d, chunks in zip(docs, chunk_lists, strict=True)
        ]
    texts = [embedded_text(c) for chunks in chunk_lists for c in chunks]
    vectors = embed_texts(index.embedder, texts, progress=on_embedded)
    sources = [d.source for d in docs]
    index.store.forget_sources(sources)
    index.store.replace_sources(sources, [c for chunks in chunk_lists for c in chunks], vectors)
    index.store.record_sources(
        [
            SourceRecord(d.source, document_hash(d, cfg), origin, len(chunks))
            for d, chunks in zip(docs, chunk_lists, strict=True)
        ]
    )
    for source in sources:
        (report.updated if source in records else report.added).append(source)
        if on_source:
            on_source(source)
    report.chunks_written += len(texts)


class _Progress:
    """One stderr progress display: files done, texts embedded."""

    def __init__(self, enabled: bool, files: int) -> None:
        self.bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.files = self.bar.add_task("indexing files", total=files)
            self.texts = self.bar.add_task("embedding chunks", total=None)

    def __enter__(self) -> _Progress:
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()

    def advance(self) -> None:
        if self.bar:
            self.bar.advance(self.files)

    def embedded(self, n: int) -> None:
        if self.bar:
            self.bar.advance(self.texts, n)
