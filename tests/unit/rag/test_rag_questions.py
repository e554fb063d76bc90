"""The packaged RAG question set and the benchmark's metric helpers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.eval.metrics import first_relevant_rank, hit_rate, mean_reciprocal_rank
from rag_support import (
    QUESTIONS_PATH,
    accepted_sources,
    answer_matches,
    containing_topics,
    load_questions,
    percentile,
    scale_texts,
    scale_vectors,
)


def _flat(text: str) -> str:
    return " ".join(text.split()).lower()


def test_question_set_is_large_and_labelled_with_real_topics() -> None:
    from pydoc_data.topics import topics

    questions = load_questions()
    assert len(questions) >= 50
    assert len({q.question for q in questions}) == len(questions)  # no duplicates
    for q in questions:
        assert q.topic in topics, q.topic
        assert q.question.rstrip().endswith("?"), q.question
        for keyword in q.answer_keywords:  # the labelled topic really holds the answer
            assert _flat(keyword) in _flat(topics[q.topic]), (q.topic, keyword)


def test_questions_are_not_copied_from_the_topic_text() -> None:
    """Natural questions: no 8-word run of a question appears verbatim in its topic."""
    from pydoc_data.topics import topics

    for q in load_questions():
        words = re.findall(r"\w+", q.question.lower())
        text = " ".join(re.findall(r"\w+", topics[q.topic].lower()))
        runs = [" ".join(words[i : i + 8]) for i in range(max(len(words) - 7, 0))]
        assert not any(run in text for run in runs), q.question


def test_load_questions_rejects_bad_lines(tmp_path: Path) -> None:
    bad = tmp_path / "q.jsonl"
    bad.write_text(json.dumps({"question": "Why?", "topic": "assert"}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"q.jsonl:1: expected"):
        load_questions(bad)
    bad.write_text(json.dumps({"question": "Why?", "topic": "x", "answer_keywords": []}) + "\n")
    with pytest.raises(InvalidInputError, match="no answer keywords"):
        load_questions(bad)


def test_containing_topics_follow_the_texts() -> None:
    from pydoc_data.topics import topics

    # the `for` statement topic is a section of the compound-statements topic
    assert "compound" in containing_topics("for")
    assert _flat(topics["for"])[200:400] in _flat(topics["compound"])
    assert containing_topics("assert") == set()
    assert accepted_sources("for", lenient=False) == {"python-reference:for"}
    assert "python-reference:compound" in accepted_sources("for", lenient=True)
    with pytest.raises(InvalidInputError, match="not a python-reference topic"):
        containing_topics("no-such-topic")


def test_ranking_metrics() -> None:
    accepted = {"a"}
    assert first_relevant_rank(["x", "a", "a"], accepted) == 2
    assert first_relevant_rank(["x", "y"], accepted) is None
    ranks = [1, 3, None, 6]
    assert hit_rate(ranks, 1) == 0.25
    assert hit_rate(ranks, 5) == 0.5
    assert hit_rate(ranks, 10) == 0.75
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 1 / 6) / 4)
    assert mean_reciprocal_rank(ranks, cutoff=5) == pytest.approx((1 + 1 / 3) / 4)
    assert hit_rate([], 5) == 0.0 and mean_reciprocal_rank([]) == 0.0


def test_answer_matches_ignores_case_and_wrapping() -> None:
    assert answer_matches("It returns the LAST\nevaluated  argument.", ["last evaluated argument"]) == (
        True,
        True,
    )
    assert answer_matches("Uses __enter__ only", ["__enter__", "__exit__"]) == (False, True)
    assert answer_matches("No idea", ["__debug__"]) == (False, False)


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(InvalidInputError):
        percentile([], 50)


def test_scale_up_keeps_unit_vectors_near_their_originals() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=(5, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    scaled = scale_vectors(base, 23, noise=0.01)
    assert scaled.shape == (23, 16) and scaled.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(scaled, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(scaled * base[np.arange(23) % 5], axis=1) > 0.99)
    assert len({row.tobytes() for row in scaled}) == 23  # no exact duplicates
    texts = scale_texts(["alpha beta gamma", "delta"], 6)
    assert texts[:2] == ["alpha beta gamma", "delta"] and len(set(texts)) == 6
    assert sorted(texts[2].split()[:-1]) == ["alpha", "beta", "gamma"]
    with pytest.raises(InvalidInputError):
        scale_texts([], 3)


def test_questions_file_is_next_to_the_module() -> None:
    assert QUESTIONS_PATH.is_file() and QUESTIONS_PATH.suffix == ".jsonl"


@pytest.mark.integration
def test_hybrid_recall_on_the_question_set(pyref_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retrieval quality on the packaged questions (the benchmark's goal is recall@5 >= 0.9 with
    hybrid + rerank, not met yet; this guards plain hybrid against regressions, lenient labels)."""
    from lmfoundry.rag import search
    from lmfoundry.rag.index import open_index

    monkeypatch.setenv("LMF_HOME", str(pyref_home))
    index = open_index("pyref")
    try:
        ranks = [
            first_relevant_rank(
                [h.chunk.source for h in search(index, q.question, k=5, mode="hybrid")],
                accepted_sources(q.topic, lenient=True),
            )
            for q in load_questions()
        ]
    finally:
        index.close()
    assert hit_rate(ranks, 5) >= 0.8, ranks  # measured 0.853 (docs/benchmarks-rag.md)


def test_load_questions_accepts_testset_rows(tmp_path: Path) -> None:
    """`lmf rag testset` output on the built-in corpus feeds the benchmark (retrieval only)."""
    path = tmp_path / "generated.jsonl"
    row = {"question": "What does assert do?", "source": "python-reference:assert", "chunk_id": "c"}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    [q] = load_questions(path)
    assert (q.topic, q.answer_keywords) == ("assert", ())
    path.write_text(json.dumps({**row, "source": "elsewhere.md"}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="or a `lmf rag testset` row"):
        load_questions(path)
