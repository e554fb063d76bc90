from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.rag import index_paths, search
from lmfoundry.rag.retrieve import bm25_tokens, reciprocal_rank_fusion


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
