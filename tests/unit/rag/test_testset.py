"""Synthetic test sets: every filter on real texts, the pipeline with a scripted generator (the
model's quality is not the unit here), and the CLI with a real (tiny) model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.errors import InvalidInputError
from lmfoundry.rag import index_paths
from lmfoundry.rag.index import open_index
from lmfoundry.rag.retrieval_eval import load_questions
from lmfoundry.rag.testset import (
    answer_supported,
    copied,
    generate_testset,
    grounded,
    key_terms,
    near_duplicate,
    parse_question,
)

from .conftest import LONG_DOCS

PARIS = LONG_DOCS["paris.md"]


def test_parse_question_takes_the_first_real_question() -> None:
    assert (
        parse_question("Question: Which river crosses Paris?\nAnswer: the Seine")
        == "Which river crosses Paris?"
    )
    assert (
        parse_question("1. Why?\n2) How many districts does Paris have?")
        == "How many districts does Paris have?"
    )
    assert parse_question("Paris is the capital of France.") is None
    assert parse_question("Is " + "very " * 45 + "long?") is None


def test_grounded_needs_the_question_key_terms_in_the_chunk() -> None:
    assert grounded("Which river flows through the capital of France?", PARIS)
    assert not grounded("What is the boiling point of mercury in kelvin?", PARIS)
    assert not grounded("What is it?", PARIS)  # no key term at all
    assert key_terms("What does the cat eat?") == {"cat", "eat"}


def test_copied_detects_six_word_runs_only() -> None:
    assert copied("Is Paris the capital of France and lies on the river Seine?", PARIS)
    assert not copied("On which river does the French capital stand?", PARIS)
    assert copied("the capital of France and lies", "Paris is the Capital of\nFrance and lies there")


def test_answer_round_trip() -> None:
    q = "Which river flows through the capital?"
    assert answer_supported("It lies on the river Seine in the north.", PARIS, q)
    assert not answer_supported("Not answerable from the passage.", PARIS, q)
    assert not answer_supported("The river flows through the capital.", PARIS, q)  # adds nothing
    assert not answer_supported("The Thames, near Westminster abbey.", PARIS, q)  # not from the chunk


def test_near_duplicates() -> None:
    kept = [key_terms("Which river flows through Paris?")]
    assert near_duplicate("Through Paris, which river flows?", kept)
    assert not near_duplicate("How many districts does Paris have?", kept)


def _scripted(replies: dict[str, tuple[str, str]]) -> Any:
    """A generator that, shown a chunk holding one of the words, writes that word's question, and
    in the round trip that word's answer."""

    def generate(prompt: str) -> str:
        question, answer = next(reply for word, reply in replies.items() if word in prompt)
        return answer if prompt.startswith("Passage:") else question

    return generate


def test_generate_testset_counts_each_filter(long_corpus_dir: Path, embedder: Any, tmp_path: Path) -> None:
    index_paths([long_corpus_dir], "docs", embedder=embedder, progress=False)
    replies = {
        "Seine": (
            "Question: Which river runs past the capital of France?",
            "The Seine, in the north.",
        ),  # kept
        "Kittens": ("Sure! Here you go.", ""),  # no question
        "savings": ("What is the boiling point of mercury in kelvin?", ""),  # not grounded
        "forecast": ("Rain in the morning and sunny spells in the afternoon?", ""),  # copied
    }
    index = open_index("docs", embedder=embedder)
    try:
        rows, report = generate_testset(index, _scripted(replies), n=10)
        chunk = next(c for c in index.store.chunks() if "Seine" in c.text)
    finally:
        index.close()
    assert (report.chunks, report.generated, report.parsed, report.grounded) == (4, 4, 3, 2)
    assert (report.not_copied, report.answerable, report.unique) == (1, 1, 1)
    assert report.examples_rejected["grounded"] == ["What is the boiling point of mercury in kelvin?"]
    assert rows == [
        {
            "question": "Which river runs past the capital of France?",
            "source": chunk.source,
            "chunk_id": chunk.chunk_id,
        }
    ]


def test_generate_testset_errors(corpus_dir: Path, embedder: Any) -> None:
    index_paths([corpus_dir], "short", embedder=embedder, progress=False)
    index = open_index("short", embedder=embedder)
    try:
        with pytest.raises(InvalidInputError, match="no chunk of 30"):
            generate_testset(index, lambda prompt: "Why?", n=5)
        with pytest.raises(InvalidInputError, match="--n must be >= 1"):
            generate_testset(index, lambda prompt: "Why?", n=0)
    finally:
        index.close()


def test_testset_cli_with_a_real_model(
    long_corpus_dir: Path,
    embedder: Any,
    tiny_reader_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index_paths([long_corpus_dir], "docs", embedder=embedder, progress=False)
    out = tmp_path / "q.jsonl"
    argv = [
        "rag",
        "testset",
        "docs",
        "--model",
        str(tiny_reader_dir),
        "--n",
        "2",
        "--out",
        str(out),
        "--json",
    ]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["filters"]["chunks"] == data["filters"]["generated"] == 2
    assert out.is_file() and data["questions"] == len(out.read_text().splitlines())
    if data["questions"]:  # a random tiny model rarely writes a usable question
        assert load_questions(out)[0].chunk_id
