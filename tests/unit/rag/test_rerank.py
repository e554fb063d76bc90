from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.rag import index_paths, search
from lmfoundry.rag.rerank import cross_encoder_rerank, llm_relevance_scores, llm_rerank, mmr, per_source
from lmfoundry.types import Chunk, Hit


def _hits(n: int) -> list[Hit]:
    return [Hit(Chunk(f"c{i}", f"s{i}", f"text {i}", 0, 6), 1.0 - i / 10) for i in range(n)]


def _brute_force_mmr(query: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> list[int]:
    picked: list[int] = []
    while len(picked) < k:
        best, best_value = -1, -np.inf
        for i in range(len(vectors)):
            if i in picked:
                continue
            redundancy = max((float(vectors[i] @ vectors[j]) for j in picked), default=0.0)
            value = lam * float(vectors[i] @ query) - (1 - lam) * redundancy
            if value > best_value:
                best, best_value = i, value
        picked.append(best)
    return picked


def test_mmr_matches_the_definition() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(8, 5))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = vectors[0] + 0.1
    hits = _hits(8)
    for lam in (0.0, 0.3, 0.7, 1.0):
        got = [int(h.chunk.chunk_id[1:]) for h in mmr(query, hits, vectors, 5, lam)]
        assert got == _brute_force_mmr(query, vectors, 5, lam)


def test_mmr_skips_near_duplicates() -> None:
    vectors = np.array([[1.0, 0.0], [0.999, 0.045], [0.6, 0.8]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = np.array([1.0, 0.0])
    ids = [h.chunk.chunk_id for h in mmr(query, _hits(3), vectors, 2, 0.3)]
    assert ids == ["c0", "c2"]
    assert [h.chunk.chunk_id for h in mmr(query, _hits(3), vectors, 2, 1.0)] == ["c0", "c1"]
    with pytest.raises(InvalidInputError, match="lambda"):
        mmr(query, _hits(3), vectors, 2, 1.5)


def test_cross_encoder_scores_pairs_and_sorts(tiny_cross_encoder_dir: Path) -> None:
    from sentence_transformers import CrossEncoder

    hits = [
        Hit(Chunk(f"c{i}", "s", t, 0, 1), 0.0) for i, t in enumerate(["the cat", "paris france", "a dog"])
    ]
    reranked = cross_encoder_rerank(str(tiny_cross_encoder_dir), "what is the capital of france", hits, 3)
    reference = CrossEncoder(str(tiny_cross_encoder_dir)).predict(
        [("what is the capital of france", h.chunk.text) for h in hits]
    )
    assert [h.score for h in reranked] == pytest.approx(sorted(reference.tolist(), reverse=True), abs=1e-5)
    with pytest.raises(InvalidInputError, match="cannot load cross-encoder"):
        cross_encoder_rerank(str(tiny_cross_encoder_dir / "missing"), "q", hits, 1)


def test_llm_relevance_is_a_probability_and_deterministic(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    texts = [
        "The quick brown fox jumps.",
        "Paris is the capital of France.",
        "assert raises AssertionError",
        "x" * 2000,
    ]
    scores = llm_relevance_scores(model, tokenizer, "What is the capital of France?", texts)
    assert all(0.0 <= s <= 1.0 for s in scores) and len(set(scores)) > 1
    assert llm_relevance_scores(model, tokenizer, "What is the capital of France?", texts) == scores
    hits = [Hit(Chunk(f"c{i}", "s", t, 0, 1), 0.0) for i, t in enumerate(texts)]
    reranked = llm_rerank(model, tokenizer, "What is the capital of France?", hits, 4)
    assert [h.chunk.text for h in reranked] == [texts[i] for i in sorted(range(4), key=lambda i: -scores[i])]


def test_rerank_specs_through_search(corpus_dir: Path, embedder: Any, tiny_cross_encoder_dir: Path) -> None:
    index_paths([corpus_dir], "docs", progress=False)
    assert len(search("docs", "capital of France", k=2, rerank="mmr:0.7")) == 2
    collapsed = search("docs", "capital of France", k=3, rerank="per-source")
    assert len({h.chunk.source for h in collapsed}) == len(collapsed) > 0
    assert (
        len(search("docs", "capital of France", k=2, rerank=f"cross-encoder:{tiny_cross_encoder_dir}")) == 2
    )
    for bad, message in [
        ("mmr:x", "invalid MMR lambda"),
        ("per-source:x", "invalid per-source limit"),
        ("per-source:0", "per-source limit must be >= 1"),
        ("cross-encoder", "name the cross-encoder"),
        ("magic", "unknown reranker"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            search("docs", "capital", k=2, rerank=bad)


def test_per_source_keeps_rank_order_and_caps_each_source() -> None:
    sources = ["a", "a", "b", "a", "c", "b", "d"]
    hits = [Hit(Chunk(f"c{i}", src, f"text {i}", 0, 6), 1.0 - i / 10) for i, src in enumerate(sources)]
    assert [h.chunk.chunk_id for h in per_source(hits, 3)] == ["c0", "c2", "c4"]
    assert [h.chunk.chunk_id for h in per_source(hits, 5, limit=2)] == ["c0", "c1", "c2", "c4", "c5"]
    assert [h.chunk.chunk_id for h in per_source(hits, 10)] == ["c0", "c2", "c4", "c6"]
