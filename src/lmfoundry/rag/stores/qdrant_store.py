"""Qdrant through the same `VectorStore` protocol: local mode (`QdrantClient(path=...)`) here,
a server or cluster with `QdrantClient(url=...)` when one machine is not enough."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.plugins import register, require
from lmfoundry.rag.stores.base import SearchFilter, SourceRecord, chunk_from_row, metadata_to_json
from lmfoundry.types import Chunk

if TYPE_CHECKING:
    import numpy as np

CHUNKS = "chunks"
SOURCES = "sources"


def _point_id(key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


class QdrantStore:
    """Chunks in one collection (payload = chunk fields), source records in a second one."""

    def __init__(self, client: Any, dimension: int) -> None:
        self.models = require("qdrant_client.models", extra="rag", package="qdrant-client")
        self.client = client
        self.dimension = dimension
        cosine = self.models.Distance.COSINE
        for name, size in ((CHUNKS, dimension), (SOURCES, 1)):
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
        self.client.upsert(CHUNKS, points=points, wait=True)

    def _delete_chunks(self, sources: Sequence[str]) -> None:
        if sources:
            selector = self.models.FilterSelector(filter=self._sources_filter(sources))
            self.client.delete(CHUNKS, points_selector=selector, wait=True)

    def replace_sources(self, sources: Sequence[str], chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        self._delete_chunks(sources)
        self.upsert(chunks, vectors)

    def delete_sources(self, sources: Sequence[str]) -> None:
        self._delete_chunks(sources)
        self.forget_sources(sources)

    def forget_sources(self, sources: Sequence[str]) -> None:
        if sources:
            ids = self.models.PointIdsList(points=[_point_id(s) for s in sources])
            self.client.delete(SOURCES, points_selector=ids, wait=True)

    def record_sources(self, records: Sequence[SourceRecord]) -> None:
        if records:
            points = [
                self.models.PointStruct(id=_point_id(r.source), vector=[1.0], payload=dict(r.__dict__))
                for r in records
            ]
            self.client.upsert(SOURCES, points=points, wait=True)

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
        records = (SourceRecord(**p.payload) for p in self._scroll(SOURCES))
        return {r.source: r for r in records}

    def chunk_sources(self) -> dict[str, int]:
        return dict(Counter(p.payload["source"] for p in self._scroll(CHUNKS)))

    def search(
        self, vector: np.ndarray, k: int, where: SearchFilter | None = None
    ) -> list[tuple[Chunk, float]]:
        total = self.count()
        if total == 0 or k <= 0:
            return []
        # Prefix and JSON-metadata filters are applied here, over all candidates.
        limit = k if where is None or where.empty else total
        response = self.client.query_points(
            CHUNKS, query=[float(x) for x in vector], limit=limit, with_payload=True
        )
        results = []
        for point in response.points:
            chunk = chunk_from_row(point.payload)
            if where is None or where.matches(chunk):
                results.append((chunk, float(point.score)))
        return results[:k]

    def chunks(self) -> list[Chunk]:
        return [chunk_from_row(p.payload) for p in self._scroll(CHUNKS)]

    def vectors(self, chunk_ids: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not chunk_ids:
            return np.zeros((0, self.dimension), dtype=np.float32)
        points = self.client.retrieve(CHUNKS, ids=[_point_id(c) for c in chunk_ids], with_vectors=True)
        by_id = {p.payload["chunk_id"]: np.asarray(p.vector, dtype=np.float32) for p in points}
        return np.stack([by_id[c] for c in chunk_ids])

    def count(self) -> int:
        return int(self.client.count(CHUNKS, exact=True).count)

    def close(self) -> None:
        self.client.close()


@register("vector_store", "qdrant")
def open_qdrant(path: Path, dimension: int, url: str | None = None) -> QdrantStore:
    """Local mode under the store folder, or a Qdrant server when `url` is given."""
    qdrant = require("qdrant_client", extra="rag", package="qdrant-client")
    client = qdrant.QdrantClient(url=url) if url else qdrant.QdrantClient(path=str(path / "qdrant"))
    return QdrantStore(client, dimension)
