"""The `VectorStore` protocol every backend implements, and the pieces they share."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from lmfoundry.types import Chunk

if TYPE_CHECKING:
    import numpy as np

CHUNK_FIELDS = ("chunk_id", "source", "text", "start", "end")


@dataclass(frozen=True)
class SourceRecord:
    """What the store knows about one indexed source: its content hash and chunk count.

    Written only after the source's chunks are, so a record always describes complete chunks.
    """

    source: str
    hash: str
    origin: str
    n_chunks: int


@dataclass(frozen=True)
class SearchFilter:
    """Restrict a search to chunks whose source starts with a prefix and/or whose metadata
    has these exact values."""

    source_prefix: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def matches(self, chunk: Chunk) -> bool:
        if self.source_prefix and not chunk.source.startswith(self.source_prefix):
            return False
        return all(chunk.metadata.get(key) == value for key, value in self.metadata.items())

    @property
    def empty(self) -> bool:
        return not self.source_prefix and not self.metadata


class VectorStore(Protocol):
    """Chunks with vectors plus one record per source. Vectors are L2-normalised; scores are
    cosine similarities (higher is better)."""

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Add (or replace by chunk_id) chunks in one write."""
        ...

    def replace_sources(self, sources: Sequence[str], chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Delete these sources' chunks, then add `chunks` in one write."""
        ...

    def delete_sources(self, sources: Sequence[str]) -> None:
        """Remove these sources' chunks, then their records."""
        ...

    def forget_sources(self, sources: Sequence[str]) -> None:
        """Remove only the records (marks the sources as needing a re-index)."""
        ...

    def record_sources(self, records: Sequence[SourceRecord]) -> None:
        """Add or replace source records in one write."""
        ...

    def sources(self) -> dict[str, SourceRecord]: ...

    def chunk_sources(self) -> dict[str, int]:
        """Chunk count per source, as actually stored (records aside)."""
        ...

    def search(
        self, vector: np.ndarray, k: int, where: SearchFilter | None = None
    ) -> list[tuple[Chunk, float]]: ...

    def chunks(self) -> list[Chunk]:
        """Every stored chunk (for BM25 and exports)."""
        ...

    def vectors(self, chunk_ids: Sequence[str]) -> np.ndarray:
        """Stored vectors of these chunks, in order."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def metadata_to_json(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, sort_keys=True, default=str)


def chunk_from_row(row: dict[str, Any]) -> Chunk:
    meta = row.get("metadata") or "{}"
    return Chunk(
        chunk_id=row["chunk_id"],
        source=row["source"],
        text=row["text"],
        start=int(row["start"]),
        end=int(row["end"]),
        metadata=json.loads(meta) if isinstance(meta, str) else dict(meta),
    )
