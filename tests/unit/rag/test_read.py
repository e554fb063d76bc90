from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.rag import ask, index_paths
from lmfoundry.rag.answer import (
    NO_ANSWER,
    build_messages,
    citations_to_sources,
    context_budget,
    fit_documents,
    parse_citations,
    plan_context,
    trim_repetition,
)
from lmfoundry.types import Chunk, Hit, SamplingParams


class WordModel:
    """Stand-in reader for budget tests: one token per whitespace-separated word."""

    tokenizer = None

    def __init__(self, context_length: int) -> None:
        self.context_length = context_length

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def prompt_ids(self, messages: list[Any]) -> list[int]:
        return [0] * sum(self.count_tokens(m.content) + 2 for m in messages)


def _hit(i: int, words: int) -> Hit:
    return Hit(Chunk(f"c{i}", f"src{i}", " ".join(["w"] * words), 0, 1), 1.0)


def test_messages_number_documents_and_instruct_citations() -> None:
    system, user = build_messages("Why?", ["alpha", "beta"])
    assert system.role == "system" and "[0]" in system.content and NO_ANSWER in system.content
    assert "Document 0:::\nalpha" in user.content and "Document 1:::\nbeta" in user.content
    assert user.content.endswith("Question: Why?")


def test_fit_documents_keeps_rank_order_within_budget() -> None:
    assert fit_documents([5, 5, 5], 10) == ([0, 1], [2])
    assert fit_documents([8, 5, 2], 10) == ([0, 2], [1])
    assert fit_documents([11], 10) == ([], [0])


def test_budget_is_context_minus_prompt_minus_answer_room() -> None:
    model = WordModel(1000)
    empty_prompt = sum(len(m.content.split()) + 2 for m in build_messages("a question", []))
    assert context_budget(model, "a question", 100) == 1000 - empty_prompt - 100  # type: ignore[arg-type]


def test_plan_drops_what_does_not_fit_and_reports_it() -> None:
    model = WordModel(400)
    budget = context_budget(model, "q", 50)  # type: ignore[arg-type]
    per_doc = (budget // 2) - 4  # two fit (each costs words + 3 for "Document i:::"), the third does not
    kept, texts, dropped, notes = plan_context("q", [_hit(i, per_doc) for i in range(3)], model, 50)  # type: ignore[arg-type]
    assert [h.chunk.chunk_id for h in kept] == ["c0", "c1"] and [h.chunk.chunk_id for h in dropped] == ["c2"]
    assert texts == [h.chunk.text for h in kept] and "dropped 1 of 3" in notes[0]


def test_plan_explains_when_not_even_one_document_fits() -> None:
    with pytest.raises(InvalidInputError, match="not even one document fits"):
        plan_context("q", [_hit(0, 500)], WordModel(300), 50)  # type: ignore[arg-type]


def test_compression_keeps_question_similar_sentences(embedder: Any) -> None:
    text = "Paris is the capital of France. " + " ".join(
        f"Filler sentence number {i} about nothing." for i in range(40)
    )
    hit = Hit(Chunk("c0", "s0", text, 0, len(text)), 1.0)
    model = WordModel(120)
    kept, texts, dropped, notes = plan_context("What is the capital of France?", [hit], model, 20, embedder)  # type: ignore[arg-type]
    assert kept == [hit] and dropped == [] and "compressed" in notes[0]
    assert "Paris is the capital of France." in texts[0] and len(texts[0]) < len(text)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Paris [0].", [0]),
        ("See [1, 0] and [2].", [1, 0, 2]),
        ("According to Document 2, yes; document 1 too.", [2, 1]),
        ("Cites [7] which does not exist, and [1].", [1]),
        (NO_ANSWER, []),
    ],
)
def test_parse_citations(answer: str, expected: list[int]) -> None:
    assert parse_citations(answer, 3) == expected


def test_citations_map_to_sources() -> None:
    hits = [_hit(0, 1), _hit(1, 1)]
    assert citations_to_sources([1], hits) == [{"document": 1, "source": "src1"}]


def test_ask_end_to_end_with_a_tiny_reader(corpus_dir: Path, embedder: Any, tiny_reader_dir: Path) -> None:
    import lmfoundry

    index_paths([corpus_dir], "docs", progress=False)
    model = lmfoundry.load(str(tiny_reader_dir))
    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    answer = ask("docs", "What is the capital of France?", model, k=3, params=params)
    assert 1 <= len(answer.hits) <= 3 and answer.dropped == []
    assert isinstance(answer.answer, str)
    sources = {h.chunk.source for h in answer.hits}
    assert all(c["source"] in sources for c in answer.citations)
    again = ask("docs", "What is the capital of France?", model, k=3, params=params)
    assert again.answer == answer.answer  # greedy is deterministic
    json.dumps(answer.to_dict())


def test_a_looping_answer_is_cut_at_the_first_repeated_sentence() -> None:
    loop = "The assert statement is a shorthand for an assertion."
    answer = "Assert does nothing when optimization is requested (Document 1).\n\n" + "\n\n".join([loop] * 6)
    trimmed = trim_repetition(answer + "\n\nThe assert")
    assert trimmed == "Assert does nothing when optimization is requested (Document 1).\n\n" + loop
    # within one line as well
    assert trim_repetition(f"{loop} {loop} {loop}") == loop


def test_answers_without_long_repeats_are_left_alone() -> None:
    plain = "Assert raises AssertionError when the expression is false. Under -O it is removed."
    assert trim_repetition(plain) == plain
    code = "Use:\n- x\n- x\nreturn x\nreturn x\nThe end."
    assert trim_repetition(code) == code
    assert trim_repetition("") == ""
