"""Citation modes of `ask`: the model's own, attributed by similarity, forced by constrained choice."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.rag import cite
from lmfoundry.rag.answer import NO_ANSWER, answer_with_citations
from lmfoundry.types import Chunk, Hit, SamplingParams

DOCS = [
    "Cats are small felines. A cat sleeps most of the day.",
    "Paris is the capital of France, on the river Seine.",
    "A bank keeps money safe and lends it out.",
]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=6)


class FixedReader:
    """A stand-in reader that always answers the same text (the unit under test is the citing)."""

    tokenizer = None
    backend = "fixed"
    context_length = 4096

    def __init__(self, text: str) -> None:
        self.text = text

    def generate(self, messages: Any, params: Any) -> Any:
        return SimpleNamespace(text=self.text)

    def prompt_ids(self, messages: Any) -> list[int]:
        return [0] * 10

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def _hits() -> list[Hit]:
    return [Hit(Chunk(f"c{i}", f"doc{i}", t, 0, len(t)), 1.0) for i, t in enumerate(DOCS)]


def test_model_written_citations_are_kept_and_not_attributed() -> None:
    answer, citations = answer_with_citations(FixedReader("Paris [1]."), "q", _hits(), DOCS, GREEDY)  # type: ignore[arg-type]
    assert answer == "Paris [1]."
    assert citations == [{"document": 1, "source": "doc1", "attributed": False, "method": "model"}]


def test_uncited_answer_is_attributed_to_the_most_similar_document(embedder: Any) -> None:
    reader = FixedReader("The capital city of France is Paris.")
    _, citations = answer_with_citations(reader, "q", _hits(), DOCS, GREEDY, "auto", embedder)  # type: ignore[arg-type]
    assert len(citations) == 1
    (c,) = citations
    assert (c["document"], c["source"], c["attributed"], c["method"]) == (1, "doc1", True, "similarity")
    assert 0.0 < c["score"] <= 1.0


def test_declining_or_model_mode_attributes_nothing(embedder: Any) -> None:
    for text, mode in (
        (NO_ANSWER, "auto"),
        ("the context does not say anything", "auto"),
        ("Paris.", "model"),
    ):
        _, citations = answer_with_citations(FixedReader(text), "q", _hits(), DOCS, GREEDY, mode, embedder)  # type: ignore[arg-type]
        assert citations == [], (text, mode)


def test_unknown_citation_mode_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="unknown citation mode 'always'"):
        answer_with_citations(FixedReader("x"), "q", _hits(), DOCS, GREEDY, "always")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_reader(tiny_reader_dir: Path) -> Any:
    import lmfoundry

    return lmfoundry.load(str(tiny_reader_dir))


def test_number_tokens_distinguish_every_document(tiny_reader: Any) -> None:
    cue, tokens = cite.number_tokens(tiny_reader, cite.FORCED_PREFIX, 4)
    assert sorted(tokens) == [0, 1, 2, 3] and len(set(tokens.values())) == 4
    for number, token in tokens.items():
        text = tiny_reader.tokenizer.decode(cite.raw_ids(tiny_reader, cue) + [token])
        assert text == f"{cite.FORCED_PREFIX} {number}"


def test_forced_citation_is_the_readers_most_probable_number(tiny_reader: Any) -> None:
    import torch

    hits = _hits()
    answer, citations = answer_with_citations(tiny_reader, "Where is Paris?", hits, DOCS, GREEDY, "forced")
    # Reference: the model's own next-token logits after the prompt and the cue, compared directly.
    from lmfoundry.rag.answer import build_messages

    prompt = tiny_reader.prompt_ids(build_messages("Where is Paris?", DOCS))
    cue, tokens = cite.number_tokens(tiny_reader, cite.FORCED_PREFIX, len(hits))
    ids = torch.tensor([prompt + cite.raw_ids(tiny_reader, cue)])
    with torch.no_grad():
        logits = tiny_reader.runtime.model(input_ids=ids).logits[0, -1]
    expected = max(tokens, key=lambda n: float(logits[tokens[n]]))
    assert answer.startswith(f"According to Document {expected}")
    assert citations[0]["document"] == expected and citations[0]["method"] == "forced"
    assert citations[0]["attributed"] is False and citations[0]["source"] == f"doc{expected}"
    assert all(c["source"] == f"doc{c['document']}" for c in citations)
