"""Synthetic retrieval test sets for any store: a model writes one question per sampled chunk,
and filters keep only questions that are usable labels.

Filters, in order (each is a plain function, and the report counts what survives each):
  1. parsed: the reply holds one question (a line ending in "?", 4 to 40 words);
  2. grounded: at least half of the question's key terms (words that are neither stop words nor
     question words), and at least one, occur in the chunk; a question about something else
     would be a wrong label. This is lexical on purpose: the retrievers under test must not
     decide which questions they are tested on;
  3. not copied: no run of `COPY_NGRAM` consecutive words of the question occurs in the chunk
     (a copied sentence is a lexical lookup, which flatters BM25);
  4. answerable (round trip): the model answers the question from the chunk alone; kept when the
     answer is not a refusal and at least half of what it adds to the question (its key terms
     that are not the question's) occurs in the chunk;
  5. unique: not a near-duplicate (Jaccard >= 0.8 of key-term sets) of a kept question.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.generate.engine import load_model
from lmfoundry.plugins import require
from lmfoundry.rag.index import RagIndex
from lmfoundry.rag.retrieval_eval import QUESTION_WORDS
from lmfoundry.rag.retrieve import bm25_tokens
from lmfoundry.types import Chunk, Message, SamplingParams

Generator = Callable[[str], str]
"""prompt -> the model's reply (greedy)."""

COPY_NGRAM = 6
MIN_CHUNK_WORDS = 30
DUPLICATE_JACCARD = 0.8
QUESTION_PROMPT = (
    'Read this passage from the document "{title}".\n\n{text}\n\n'
    "Write one question that a reader could answer from this passage. Use your own words; do not "
    "copy a sentence. Reply with the question only."
)
ANSWER_PROMPT = (
    "Passage:\n{text}\n\nAnswer the question using only the passage, in one sentence. If the "
    'passage does not answer it, reply "not answerable".\nQuestion: {question}'
)
_REFUSALS = ("not answerable", "cannot be answered", "does not answer", "doesn't answer", "no answer")
_QUESTION_LINE = re.compile(r"([^\n?]*\?)")
_LEAD = re.compile(r"^\s*(?:question\s*\d*\s*[:.-]|q\s*[:.-]|\d+[.)]|[-*])\s*", re.IGNORECASE)


def key_terms(text: str) -> set[str]:
    """Content words: lower-cased, without stop words and question words."""
    return {w for w in bm25_tokens(text) if w not in QUESTION_WORDS and len(w) > 1}


def parse_question(reply: str) -> str | None:
    """The first question in a model's reply, without a "Question:" lead; None if there is none."""
    for match in _QUESTION_LINE.finditer(reply):
        question = " ".join(_LEAD.sub("", match.group(1)).split())
        if 4 <= len(question.split()) <= 40:
            return question
    return None


def grounded(question: str, chunk_text: str, share: float = 0.5) -> bool:
    """At least `share` of the question's key terms, and at least one, occur in the chunk."""
    terms = key_terms(question)
    if not terms:
        return False
    found = terms & set(bm25_tokens(chunk_text))
    return len(found) >= max(1, share * len(terms))


def copied(question: str, chunk_text: str, n: int = COPY_NGRAM) -> bool:
    """Does a run of `n` consecutive words of the question occur verbatim in the chunk?"""
    words = re.findall(r"\w+", question.lower())
    text = " " + " ".join(re.findall(r"\w+", chunk_text.lower())) + " "
    return any(f" {' '.join(words[i : i + n])} " in text for i in range(len(words) - n + 1))


def answer_supported(answer: str, chunk_text: str, question: str = "", share: float = 0.5) -> bool:
    """The round-trip answer is not a refusal, adds something to the question, and at least
    `share` of what it adds (key terms not in the question) comes from the chunk."""
    flat = " ".join(answer.lower().split())
    if not flat or any(r in flat for r in _REFUSALS):
        return False
    terms = key_terms(answer) - key_terms(question)
    return bool(terms) and len(terms & set(bm25_tokens(chunk_text))) >= share * len(terms)


def near_duplicate(question: str, kept: Sequence[set[str]], threshold: float = DUPLICATE_JACCARD) -> bool:
    terms = key_terms(question)
    return any(len(terms & k) / max(len(terms | k), 1) >= threshold for k in kept)


def sample_chunks(chunks: Sequence[Chunk], n: int) -> list[Chunk]:
    """`n` chunks of at least MIN_CHUNK_WORDS words, spread evenly over the store in id order
    (deterministic; every part of the corpus is covered)."""
    usable = sorted((c for c in chunks if len(c.text.split()) >= MIN_CHUNK_WORDS), key=lambda c: c.chunk_id)
    n = min(n, len(usable))
    return [usable[i * len(usable) // n] for i in range(n)] if n else []


def chunk_title(chunk: Chunk) -> str:
    """The document's title: its metadata title, else the source's last path or topic part."""
    title = chunk.metadata.get("title")
    if isinstance(title, str) and title:
        return title
    return re.split(r"[/\\:]", chunk.source)[-1]


@dataclass
class TestsetReport:
    chunks: int = 0
    generated: int = 0
    parsed: int = 0
    grounded: int = 0
    not_copied: int = 0
    answerable: int = 0
    unique: int = 0
    examples_rejected: dict[str, list[str]] = field(default_factory=dict)

    def reject(self, stage: str, text: str) -> None:
        examples = self.examples_rejected.setdefault(stage, [])
        if len(examples) < 3:
            examples.append(text)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def question_for(
    chunk: Chunk, generate: Generator, report: TestsetReport, answer_check: bool, kept: list[set[str]]
) -> dict[str, Any] | None:
    """Generate and filter one question for `chunk`; the JSONL row if it survives."""
    reply = generate(QUESTION_PROMPT.format(title=chunk_title(chunk), text=chunk.text))
    report.generated += 1
    question = parse_question(reply)
    if question is None:
        report.reject("parsed", reply[:200])
        return None
    report.parsed += 1
    if not grounded(question, chunk.text):
        report.reject("grounded", question)
        return None
    report.grounded += 1
    if copied(question, chunk.text):
        report.reject("not_copied", question)
        return None
    report.not_copied += 1
    if answer_check:
        answer = generate(ANSWER_PROMPT.format(text=chunk.text, question=question))
        if not answer_supported(answer, chunk.text, question):
            report.reject("answerable", f"{question} -> {answer[:120]}")
            return None
    report.answerable += 1
    if near_duplicate(question, kept):
        report.reject("unique", question)
        return None
    report.unique += 1
    kept.append(key_terms(question))
    return {"question": question, "source": chunk.source, "chunk_id": chunk.chunk_id}


def generate_testset(
    index: RagIndex,
    generate: Generator,
    n: int = 50,
    *,
    answer_check: bool = True,
    on_chunk: Callable[[], None] | None = None,
) -> tuple[list[dict[str, Any]], TestsetReport]:
    """Up to one question per sampled chunk (n chunks), filtered; rows and the filter counts."""
    if n < 1:
        raise InvalidInputError(f"--n must be >= 1, got {n}")
    chunks = sample_chunks(index.store.chunks(), n)
    if not chunks:
        raise InvalidInputError(f"store {index.name!r} has no chunk of {MIN_CHUNK_WORDS}+ words to ask about")
    report = TestsetReport(chunks=len(chunks))
    rows: list[dict[str, Any]] = []
    kept: list[set[str]] = []
    for chunk in chunks:
        row = question_for(chunk, generate, report, answer_check, kept)
        if row is not None:
            rows.append(row)
        if on_chunk:
            on_chunk()
    return rows, report


def write_testset(rows: Sequence[dict[str, Any]], path: Path) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def model_generator(spec: str, max_new_tokens: int = 64, endpoint_model: str = "default") -> Generator:
    """Greedy replies from a model `lmfoundry.load` knows, or from an OpenAI-compatible endpoint
    when `spec` is an http(s) URL (asked for `endpoint_model`)."""
    if spec.startswith(("http://", "https://")):
        return _endpoint_generator(spec, endpoint_model, max_new_tokens)
    model = load_model(spec)
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)

    def reply(prompt: str) -> str:
        turn: str | list[Message] = [Message("user", prompt)] if model.has_chat_template() else prompt
        return model.generate(turn, params).text

    return reply


def _endpoint_generator(url: str, model: str, max_tokens: int) -> Generator:
    openai = require("openai", extra="client")
    client = openai.OpenAI(base_url=url, api_key="not-needed", timeout=120.0, max_retries=2)

    def reply(prompt: str) -> str:
        try:
            response = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                temperature=0.0,
                max_tokens=max_tokens,
            )
        except Exception as exc:  # the openai package raises its own hierarchy
            raise InvalidInputError(f"question generator endpoint {url} failed: {exc}") from exc
        return response.choices[0].message.content or ""

    return reply
