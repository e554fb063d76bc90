"""Qdrant through the same `VectorStore` protocol: local mode (`QdrantClient(path=...)`) by
default, a server or cluster with `QdrantClient(url=...)` when one machine is not enough.

Which server: the `url` argument, else `connect_to(...)` around the call (what `lmf rag
--qdrant-url` does), else `$LMF_QDRANT_URL`, else the server the store was created on (recorded
in `qdrant_server.json` in the store folder, without the API key), else local mode. A store
lives where it was created: local vectors are never silently swapped for an empty server.
On a server, each store's collections are named `lmf-<store>-chunks` / `lmf-<store>-sources`.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.plugins import require
from lmfoundry.rag.stores.base import SearchFilter, SourceRecord, chunk_from_row, metadata_to_json
from lmfoundry.types import Chunk

if TYPE_CHECKING:
    import numpy as np

CHUNKS = "chunks"
SOURCES = "sources"
URL_ENV = "LMF_QDRANT_URL"
API_KEY_ENV = "LMF_QDRANT_API_KEY"
SERVER_FILE = "qdrant_server.json"
LOCAL_DIR = "qdrant"


@dataclass(frozen=True)
class QdrantServer:
    """Where a server-mode store lives; `origin` says which setting chose it (for error messages)."""

    url: str
    api_key: str | None = None
    origin: str = "url"


_connect: ContextVar[tuple[str | None, str | None]] = ContextVar("lmf_qdrant", default=(None, None))


@contextlib.contextmanager
def connect_to(url: str | None = None, api_key: str | None = None) -> Iterator[None]:
    """Inside this block, Qdrant stores use the server at `url` and/or this API key (what
    `lmf rag --qdrant-url/--qdrant-api-key` do); None keeps the env / recorded setting."""
    token = _connect.set((url, api_key))
    try:
        yield
    finally:
        _connect.reset(token)


def resolve_server(path: Path, url: str | None = None, api_key: str | None = None) -> QdrantServer | None:
    """The server the store at `path` should use, or None for local mode (see the module docs)."""
    scoped_url, scoped_key = _connect.get()
    key = api_key or scoped_key or os.environ.get(API_KEY_ENV) or None
    env_url = os.environ.get(URL_ENV, "").strip()
    recorded = path / SERVER_FILE
    if url or scoped_url or env_url:
        origin = "url" if url else "--qdrant-url" if scoped_url else URL_ENV
        server = QdrantServer(url or scoped_url or env_url, key, origin)
        if (path / LOCAL_DIR).exists() and not recorded.exists():
            raise InvalidInputError(
                f"RAG store {path.name!r} keeps its vectors in local mode ({path / LOCAL_DIR}), so it "
                f"cannot use the Qdrant server {server.url} (from {origin}): index into a new store "
                f"name, or drop {origin} for this store"
            )
        return server
    if recorded.is_file():
        return QdrantServer(json.loads(recorded.read_text(encoding="utf-8"))["url"], key, str(recorded))
    return None


def _point_id(key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


class QdrantStore:
    """Chunks in one collection (payload = chunk fields), source records in a second one."""

    def __init__(self, client: Any, dimension: int, prefix: str = "") -> None:
        """`prefix` keeps stores apart on a shared server (local mode has a folder per store)."""
        self.models = require("qdrant_client.models", extra="rag", package="qdrant-client")
        self.client = client
        self.dimension = dimension
        self.chunks_collection, self.sources_collection = prefix + CHUNKS, prefix + SOURCES
        cosine = self.models.Distance.COSINE
        for name, size in ((self.chunks_collection, dimension), (self.sources_collection, 1)):
            if not client.collection_exists(name):
                client.create_collection(
                    name, vectors_config=self.models.VectorParams(size=size, distance=cosine)
                )

    def _sources_filter(self, sources: Sequence[str]) -> Any:
        m = self.models
        return m.Filter(must=[m.FieldCondition(key="source", match=m.MatchAny(any=list(sources)))])

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if not chunks:
            return
        points = [
            self.models.PointStruct(
                id=_point_id(c.chunk_id),
                vector=[float(x) for x in vectors[i]],
                payload={
                    "chunk_id": c.chunk_id,
                    "source": c.source,
                    "text": c.text,
                    "start": c.start,
                    "end": c.end,
                    "metadata": metadata_to_json(c.metadata),
                },
            )
            for i, c in enumerate(chunks)
        ]
        self.client.upsert(self.chunks_collection, points=points, wait=True)

    def _delete_chunks(self, sources: Sequence[str]) -> None:
        if sources:
            selector = self.models.FilterSelector(filter=self._sources_filter(sources))
            self.client.delete(self.chunks_collection, points_selector=selector, wait=True)

    def replace_sources(self, sources: Sequence[str], chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        self._delete_chunks(sources)
        self.upsert(chunks, vectors)

    def delete_sources(self, sources: Sequence[str]) -> None:
        self._delete_chunks(sources)
        self.forget_sources(sources)

    def forget_sources(self, sources: Sequence[str]) -> None:
        if sources:
            ids = self.models.PointIdsList(points=[_point_id(s) for s in sources])
            self.client.delete(self.sources_collection, points_selector=ids, wait=True)

    def record_sources(self, records: Sequence[SourceRecord]) -> None:
        if records:
            points = [
                self.models.PointStruct(id=_point_id(r.source), vector=[1.0], payload=dict(r.__dict__))
                for r in records
            ]
            self.client.upsert(self.sources_collection, points=points, wait=True)

    def _scroll(self, collection: str, vectors: bool = False) -> Iterator[Any]:
        offset = None
        while True:
            points, offset = self.client.scroll(
                collection, limit=256, offset=offset, with_payload=True, with_vectors=vectors
            )
            yield from points
            if offset is None:
                return

    def sources(self) -> dict[str, SourceRecord]:
        records = (SourceRecord(**p.payload) for p in self._scroll(self.sources_collection))
        return {r.source: r for r in records}

    def chunk_sources(self) -> dict[str, int]:
        return dict(Counter(p.payload["source"] for p in self._scroll(self.chunks_collection)))

    def search(
        self, vector: np.ndarray, k: int, where: SearchFilter | None = None
    ) -> list[tuple[Chunk, float]]:
        total = self.count()
        if total == 0 or k <= 0:
            return []
        # Prefix and JSON-metadata filters are applied here, over all candidates.
        limit = k if where is None or where.empty else total
        response = self.client.query_points(
            self.chunks_collection, query=[float(x) for x in vector], limit=limit, with_payload=True
        )
        results = []
        for point in response.points:
            chunk = chunk_from_row(point.payload)
            if where is None or where.matches(chunk):
                results.append((chunk, float(point.score)))
        return results[:k]

    def chunks(self) -> list[Chunk]:
        return [chunk_from_row(p.payload) for p in self._scroll(self.chunks_collection)]

    def vectors(self, chunk_ids: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not chunk_ids:
            return np.zeros((0, self.dimension), dtype=np.float32)
        points = self.client.retrieve(
            self.chunks_collection, ids=[_point_id(c) for c in chunk_ids], with_vectors=True
        )
        by_id = {p.payload["chunk_id"]: np.asarray(p.vector, dtype=np.float32) for p in points}
        return np.stack([by_id[c] for c in chunk_ids])

    def count(self) -> int:
        return int(self.client.count(self.chunks_collection, exact=True).count)

    def close(self) -> None:
        self.client.close()


def open_qdrant(
    path: Path, dimension: int, url: str | None = None, api_key: str | None = None
) -> QdrantStore:
    """Local mode under the store folder, or a Qdrant server (see `resolve_server`)."""
    qdrant = require("qdrant_client", extra="rag", package="qdrant-client")
    server = resolve_server(path, url, api_key)
    if server is None:
        return QdrantStore(qdrant.QdrantClient(path=str(path / LOCAL_DIR)), dimension)
    recorded = json.dumps({"url": server.url}) + "\n"  # first, so the store never looks local
    record = path / SERVER_FILE
    if path.is_dir() and (not record.is_file() or record.read_text(encoding="utf-8") != recorded):
        atomic_write_text(record, recorded)
    return _open_server(qdrant, server, path.name, dimension)


def _open_server(qdrant: Any, server: QdrantServer, name: str, dimension: int) -> QdrantStore:
    """Connect and create the store's collections; connection and auth failures name the server."""
    from qdrant_client.http.exceptions import ApiException, UnexpectedResponse

    where = f"the Qdrant server {server.url} (from {server.origin})"
    try:
        # The version check runs in a background thread and only warns; an unreachable server
        # gets the clear error below instead (from creating the collections).
        client = qdrant.QdrantClient(url=server.url, api_key=server.api_key, check_compatibility=False)
        return QdrantStore(client, dimension, prefix=f"lmf-{name}-")
    except UnexpectedResponse as err:
        hint = f" (check --qdrant-api-key / {API_KEY_ENV})" if err.status_code in (401, 403) else ""
        raise LmfError(
            f"{where} refused the request: HTTP {err.status_code} {err.reason_phrase}{hint}"
        ) from err
    except (ApiException, ValueError, OSError) as err:
        raise LmfError(f"cannot reach {where}: {err}") from err
