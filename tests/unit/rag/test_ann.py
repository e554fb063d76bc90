"""The LanceDB store's approximate vector index: built past a size threshold, kept complete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.rag.stores.base import SearchFilter
from lmfoundry.rag.stores.lancedb_store import LanceStore, ann_min_rows
from lmfoundry.types import Chunk

DIM = 16


def _data(n: int, seed: int = 0) -> tuple[list[Chunk], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [Chunk(f"s{seed}-{i}", f"src{i % 7}", f"text {i}", 0, 1, {"parity": i % 2}) for i in range(n)]
    return chunks, vectors


def test_threshold_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMF_RAG_ANN_MIN_ROWS", raising=False)
    assert ann_min_rows() == 20_000
    monkeypatch.setenv("LMF_RAG_ANN_MIN_ROWS", "0")
    assert ann_min_rows() == 0
    for bad in ("many", "-1"):
        monkeypatch.setenv("LMF_RAG_ANN_MIN_ROWS", bad)
        with pytest.raises(InvalidInputError, match="LMF_RAG_ANN_MIN_ROWS"):
            ann_min_rows()


def test_index_is_built_past_the_threshold_and_matches_the_exact_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMF_RAG_ANN_MIN_ROWS", "400")
    store = LanceStore(tmp_path / "lance", DIM)
    chunks, vectors = _data(600)
    store.replace_sources([], chunks[:300], vectors[:300])
    store.compact()
    assert store.ann_index_stats() is None  # 300 < 400: flat scan only
    store.replace_sources([], chunks[300:], vectors[300:])
    store.compact()
    stats = store.ann_index_stats()
    assert stats == {"indexed_rows": 600, "unindexed_rows": 0, "trained_rows": 600}

    queries = np.random.default_rng(1).normal(size=(20, DIM)).astype(np.float32)
    found = 0
    for q in queries:
        exact = {chunks[i].chunk_id for i in np.argsort(-(vectors @ q))[:5]}  # numpy reference
        found += len(exact & {c.chunk_id for c, _ in store.search(q, 5)})
        assert {c.chunk_id for c, _ in store.search(q, 5, exact=True)} == exact
    assert found / (5 * len(queries)) >= 0.9


def test_rows_added_after_the_index_are_found_and_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMF_RAG_ANN_MIN_ROWS", "300")
    store = LanceStore(tmp_path / "lance", DIM)
    chunks, vectors = _data(300)
    store.replace_sources([], chunks, vectors)
    store.compact()
    new_chunks, new_vectors = _data(50, seed=2)
    store.replace_sources([], new_chunks, new_vectors)
    assert store.ann_index_stats()["unindexed_rows"] == 50  # type: ignore[index]
    top = store.search(new_vectors[7], 1)
    assert top[0][0].chunk_id == new_chunks[7].chunk_id  # unindexed rows are still searched
    store.compact()
    assert store.ann_index_stats() == {"indexed_rows": 350, "unindexed_rows": 0, "trained_rows": 300}
    more, more_vectors = _data(300, seed=3)
    store.replace_sources([], more, more_vectors)
    store.compact()  # the table doubled since training: retrained
    assert store.ann_index_stats() == {"indexed_rows": 650, "unindexed_rows": 0, "trained_rows": 650}
    hits = store.search(vectors[3], 10, SearchFilter(metadata={"parity": 1}))
    assert hits and all(c.metadata["parity"] == 1 for c, _ in hits)
