from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.rag import index_paths, search
from lmfoundry.rag.index import open_index
from lmfoundry.rag.retrieve import apply_length_prior, bm25_tokens, reciprocal_rank_fusion


def test_rrf_matches_the_formula() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert [i for i, _ in reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]])] == ["a", "c", "b"]


def test_bm25_tokens_drop_stop_words_and_case() -> None:
    assert bm25_tokens("The Assert statement, and the debug flag!") == [
        "assert",
        "statement",
        "debug",
        "flag",
    ]


def test_modes_find_the_matching_document(corpus_dir: Path, embedder: Any) -> None:
    index_paths([corpus_dir], "docs", progress=False)
    for mode in ("dense", "bm25", "hybrid"):
        hits = search("docs", "What is the capital of France?", k=2, mode=mode)
        assert hits[0].chunk.source.endswith("paris.md"), mode
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    assert search("docs", "zzzzqqq", k=3, mode="bm25") == []  # no shared word, no BM25 hit


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"k": 0}, "k must be"), ({"mode": "magic"}, "unknown retrieval mode")]
)
def test_bad_search_arguments(corpus_dir: Path, embedder: Any, kwargs: dict[str, Any], message: str) -> None:
    index_paths([corpus_dir / "cats.txt"], "docs", progress=False)
    with pytest.raises(InvalidInputError, match=message):
        search("docs", "cat", **kwargs)
    with pytest.raises(InvalidInputError, match="empty"):
        search("docs", "   ")


@pytest.mark.integration
def test_python_reference_assert_question_in_hybrid_top5(
    pyref_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quality target: the assert topic answers the optimisation question (whole built-in corpus)."""
    monkeypatch.setenv("LMF_HOME", str(pyref_home))
    hits = search(
        "pyref", "What does the assert statement do when optimization is requested?", k=5, mode="hybrid"
    )
    assert "python-reference:assert" in [h.chunk.source for h in hits]


def test_length_prior_lowers_long_documents_by_the_log_of_their_chunks() -> None:
    from lmfoundry.types import Chunk, Hit

    def hit(source: str, score: float) -> Hit:
        return Hit(Chunk(f"{source}-{score}", source, "text", 0, 4), score)

    hits = [hit("long", 0.80), hit("short", 0.75), hit("long", 0.70)]
    sizes = {"long": 20, "short": 1}
    assert [h.chunk.source for h in apply_length_prior(hits, sizes, 0.0, relative=False)] == [
        "long",
        "short",
        "long",
    ]
    ranked = apply_length_prior(hits, sizes, 0.03, relative=False)
    assert [h.score for h in ranked] == pytest.approx(
        [0.75, 0.80 - 0.03 * math.log(20), 0.70 - 0.03 * math.log(20)]
    )
    bm25 = apply_length_prior([hit("long", 8.0), hit("short", 6.0)], sizes, 0.12, relative=True)
    assert [h.chunk.source for h in bm25] == ["short", "long"]
    assert [h.score for h in bm25] == pytest.approx([6.0, 8.0 - 8.0 * 0.12 * math.log(20)])


LONG_TOPIC = " ".join(
    f"Part {i}: the cat family includes lions, tigers and house cats, and section {i} lists their habitats."
    for i in range(12)
)


def test_search_applies_the_prior_to_the_stored_chunk_counts(tmp_path: Path, embedder: Any) -> None:
    (tmp_path / "felines.txt").write_text(LONG_TOPIC, encoding="utf-8")
    (tmp_path / "sleep.txt").write_text("A house cat sleeps for most of the day.", encoding="utf-8")
    index_paths([tmp_path], "docs", chunk_size=32, progress=False)
    query = "Which animals belong to the cat family?"
    index = open_index("docs")
    full = {s: r.n_chunks for s, r in index.store.sources().items()}
    index.close()
    sizes = {Path(s).name: n for s, n in full.items()}
    assert sizes["felines.txt"] >= 10 and sizes["sleep.txt"] == 1
    for mode, strength in (("dense", 0.05), ("bm25", 4 * 0.05)):
        raw = search("docs", query, k=20, mode=mode, length_prior=0)
        unit = max(h.score for h in raw) if mode == "bm25" else 1.0
        expected = sorted(
            raw, key=lambda h: -(h.score - unit * strength * math.log(sizes[Path(h.chunk.source).name]))
        )
        got = search("docs", query, k=5, mode=mode, length_prior=0.05)
        assert [h.chunk.chunk_id for h in got] == [h.chunk.chunk_id for h in expected[:5]], mode
    # hybrid: the prior reorders each list of 20 candidates, then RRF fuses them
    dense = apply_length_prior(
        search("docs", query, k=20, mode="dense", length_prior=0), full, 0.05, relative=False
    )
    bm25 = apply_length_prior(
        search("docs", query, k=20, mode="bm25", length_prior=0), full, 0.2, relative=True
    )
    fused = reciprocal_rank_fusion([[h.chunk.chunk_id for h in dense], [h.chunk.chunk_id for h in bm25]])
    got = search("docs", query, k=5, mode="hybrid", length_prior=0.05)
    assert [h.chunk.chunk_id for h in got] == [cid for cid, _ in fused[:5]]
    with pytest.raises(InvalidInputError, match="length prior"):
        search("docs", "cat", length_prior=-1)
