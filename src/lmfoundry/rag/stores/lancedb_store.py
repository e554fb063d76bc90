"""LanceDB on local disk: the default vector store (`$LMF_HOME/rag/<store>/lance`).

Small tables are searched exactly (a flat scan: a few ms at 1k chunks, but ~100 ms at 100k).
Once a table holds `ann_min_rows()` chunks (20,000 unless `LMF_RAG_ANN_MIN_ROWS` says
otherwise), `compact()` builds an IVF_HNSW_SQ approximate index on the vectors; searches then
probe `NPROBES` partitions and re-rank `REFINE_FACTOR` x k candidates with the exact vectors,
which kept the top 10 equal to the flat scan's on the benchmark (docs/benchmarks-rag.md).
Rows added later are merged into the index by `compact()` (LanceDB scans not-yet-indexed rows
exactly, so results stay complete in between); the index is retrained when the table has
doubled since it was trained, because its partitions were learnt from the older data.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.plugins import require
from lmfoundry.rag.stores.base import SearchFilter, SourceRecord, chunk_from_row, metadata_to_json
from lmfoundry.types import Chunk

if TYPE_CHECKING:
    import numpy as np


ANN_MIN_ROWS = 20_000
"""Default table size from which the vector index is built (override: LMF_RAG_ANN_MIN_ROWS)."""
ANN_INDEX_TYPE = "IVF_HNSW_SQ"
NPROBES = 20
REFINE_FACTOR = 10
_INDEX_NAME = "vector_idx"
_RETRAIN_GROWTH = 2.0


def ann_min_rows() -> int:
    """Table size from which `compact()` builds the ANN index ($LMF_RAG_ANN_MIN_ROWS; 0 = never)."""
    raw = os.environ.get("LMF_RAG_ANN_MIN_ROWS", "").strip()
    if not raw:
        return ANN_MIN_ROWS
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInputError(f"LMF_RAG_ANN_MIN_ROWS must be a whole number, got {raw!r}") from None
    if value < 0:
        raise InvalidInputError(f"LMF_RAG_ANN_MIN_ROWS must be >= 0 (0 disables the index), got {value}")
    return value


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quoted_list(values: Iterable[str]) -> str:
    return ", ".join(_quote(v) for v in values)


class LanceStore:
    """Two tables: `chunks` (text, offsets, metadata JSON, vector) and `sources` (hash records)."""

    def __init__(self, path: Path, dimension: int) -> None:
        lancedb = require("lancedb", extra="rag")
        import pyarrow as pa

        self.dimension = dimension
        self.path = path
        self.db = lancedb.connect(str(path))
        chunk_schema = pa.schema(
            [
                pa.field("chunk_id", pa.string()),
                pa.field("source", pa.string()),
                pa.field("text", pa.string()),
                pa.field("start", pa.int64()),
                pa.field("end", pa.int64()),
                pa.field("metadata", pa.string()),
                pa.field("vector", pa.list_(pa.float32(), dimension)),
            ]
        )
        source_schema = pa.schema(
            [
                pa.field("source", pa.string()),
                pa.field("hash", pa.string()),
                pa.field("origin", pa.string()),
                pa.field("n_chunks", pa.int64()),
            ]
        )
        self.chunk_schema = chunk_schema
        self.chunk_table = self._table("chunks", chunk_schema)
        self.source_table = self._table("sources", source_schema)

    def _table(self, name: str, schema: Any) -> Any:
        return self.db.create_table(name, schema=schema, exist_ok=True)

    def _rows(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> Any:
        """One Arrow table, built column by column (a list of row dicts costs ~10x more at 100k)."""
        import numpy as np
        import pyarrow as pa

        flat = pa.array(np.ascontiguousarray(vectors[: len(chunks)], dtype=np.float32).reshape(-1))
        columns = {
            "chunk_id": pa.array([c.chunk_id for c in chunks], pa.string()),
            "source": pa.array([c.source for c in chunks], pa.string()),
            "text": pa.array([c.text for c in chunks], pa.string()),
            "start": pa.array([c.start for c in chunks], pa.int64()),
            "end": pa.array([c.end for c in chunks], pa.int64()),
            "metadata": pa.array([metadata_to_json(c.metadata) for c in chunks], pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, self.dimension),
        }
        return pa.table(columns, schema=self.chunk_schema)

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if chunks:
            self.chunk_table.delete(f"chunk_id IN ({_quoted_list(c.chunk_id for c in chunks)})")
            self.chunk_table.add(self._rows(chunks, vectors))

    def replace_sources(self, sources: Sequence[str], chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if sources:
            self.chunk_table.delete(f"source IN ({_quoted_list(sources)})")
        if chunks:
            self.chunk_table.add(self._rows(chunks, vectors))

    def delete_sources(self, sources: Sequence[str]) -> None:
        if sources:
            self.chunk_table.delete(f"source IN ({_quoted_list(sources)})")
            self.forget_sources(sources)

    def forget_sources(self, sources: Sequence[str]) -> None:
        if sources:
            self.source_table.delete(f"source IN ({_quoted_list(sources)})")

    def record_sources(self, records: Sequence[SourceRecord]) -> None:
        if records:
            merge = (
                self.source_table.merge_insert("source")
                .when_matched_update_all()
                .when_not_matched_insert_all()
            )
            merge.execute([r.__dict__ for r in records])

    def compact(self) -> None:
        """Merge the small fragments many incremental writes leave behind, and keep the vector
        index in step: built once the table is large enough, updated or retrained after writes."""
        for table in (self.chunk_table, self.source_table):
            table.optimize()  # also folds newly added rows into an existing vector index
        minimum = ann_min_rows()
        stats = self.ann_index_stats()
        rows = self.count()
        if (
            minimum
            and rows >= minimum
            and (stats is None or rows >= _RETRAIN_GROWTH * max(stats["trained_rows"], 1))
        ):
            self.build_ann_index()

    def build_ann_index(self) -> None:
        """(Re)train the approximate vector index on the current rows (replaces an old one)."""
        self.chunk_table.create_index(
            metric="cosine",
            vector_column_name="vector",
            index_type=ANN_INDEX_TYPE,
            name=_INDEX_NAME,
            replace=True,
        )
        atomic_write_text(self._trained_rows_path(), str(self.count()))

    def _trained_rows_path(self) -> Path:
        return self.path / "ann_trained_rows"

    def ann_index_stats(self) -> dict[str, int] | None:
        """{"indexed_rows", "unindexed_rows", "trained_rows"} of the vector index, or None."""
        if not any(getattr(i, "name", None) == _INDEX_NAME for i in self.chunk_table.list_indices()):
            return None
        os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")  # counts only, not centroids
        stats = self.chunk_table.index_stats(_INDEX_NAME)
        marker = self._trained_rows_path()
        indexed = int(stats.num_indexed_rows) if stats else 0
        trained = int(marker.read_text(encoding="utf-8")) if marker.is_file() else indexed
        return {
            "indexed_rows": indexed,
            "unindexed_rows": int(stats.num_unindexed_rows) if stats else 0,
            "trained_rows": trained,
        }

    def sources(self) -> dict[str, SourceRecord]:
        rows = self.source_table.to_arrow().to_pylist()
        return {r["source"]: SourceRecord(**r) for r in rows}

    def chunk_sources(self) -> dict[str, int]:
        column = self.chunk_table.to_arrow().column("source").to_pylist()
        return dict(Counter(column))

    def search(
        self, vector: np.ndarray, k: int, where: SearchFilter | None = None, *, exact: bool = False
    ) -> list[tuple[Chunk, float]]:
        """Top-k by cosine similarity; through the ANN index when there is one, unless `exact`
        (or a metadata filter, which needs every candidate) asks for the flat scan."""
        total = self.count()
        if total == 0 or k <= 0:
            return []
        query = (
            self.chunk_table.search(vector.astype("float32"))
            .distance_type("cosine")
            .select(["chunk_id", "source", "text", "start", "end", "metadata", "_distance"])  # no vectors
        )
        if where and where.source_prefix:
            query = query.where(f"starts_with(source, {_quote(where.source_prefix)})", prefilter=True)
        # Metadata is stored as JSON, so exact-match filters are applied here, over all candidates.
        limit = total if where and where.metadata else k
        if exact or limit > k:
            query = query.bypass_vector_index()
        else:  # harmless without an index; with one: probe and re-rank with the exact vectors
            query = query.nprobes(NPROBES).refine_factor(REFINE_FACTOR)
        results = []
        for row in query.limit(limit).to_list():
            chunk = chunk_from_row(row)
            if where is None or where.matches(chunk):
                results.append((chunk, 1.0 - float(row["_distance"])))
        return results[:k]

    def chunks(self) -> list[Chunk]:
        columns = ["chunk_id", "source", "text", "start", "end", "metadata"]
        table = self.chunk_table.to_arrow().select(columns)
        return [chunk_from_row(r) for r in table.to_pylist()]

    def vectors(self, chunk_ids: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not chunk_ids:
            return np.zeros((0, self.dimension), dtype=np.float32)
        ids = _quoted_list(chunk_ids)
        rows = self.chunk_table.search().where(f"chunk_id IN ({ids})").limit(len(chunk_ids) * 2).to_list()
        by_id = {r["chunk_id"]: np.asarray(r["vector"], dtype=np.float32) for r in rows}
        return np.stack([by_id[c] for c in chunk_ids])

    def count(self) -> int:
        return int(self.chunk_table.count_rows())

    def close(self) -> None:
        """LanceDB holds no locks; nothing to release."""


def open_lancedb(path: Path, dimension: int) -> LanceStore:
    return LanceStore(path / "lance", dimension)
