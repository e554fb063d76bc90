"""Synthetic retrieval test sets for any store: a model writes questions about sampled chunks,
and filters keep only questions that are usable labels.

For each chunk the model gets up to `candidates` tries: first a question about the whole chunk,
then questions each pointed at another informative sentence of the chunk (few-shot; a retry
asks about another fact instead of repeating a greedy reply). The first candidate that passes
every filter is kept. On the packaged 135M model the whole-chunk prompt survives more often per
try, and the sentence retries rescue many of the chunks it fails on (docs/benchmarks-rag.md).

Filters, in order (each a plain function; the report counts the candidates that survive each):
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

Every chunk's candidates and verdicts are appended to a progress file as they are made
(`testset_progress`), so a killed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import random
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
from lmfoundry.rag.testset_progress import ProgressWriter, read_progress
from lmfoundry.types import Chunk, Message, SamplingParams

Prompt = str | list[Message]
"""One user message, or a conversation (the few-shot question prompt)."""
Generator = Callable[[Prompt], str]
"""prompt -> the model's reply (greedy)."""

COPY_NGRAM = 6
MIN_CHUNK_WORDS = 30
FOCUS_MIN_WORDS = 6
DUPLICATE_JACCARD = 0.8
PROMPT_VERSION = 3
"""Bumped whenever the prompts or the choice of focus sentences change: part of the configuration
a resumed run must match."""
CHUNK_PROMPT = (
    'Read this passage from the document "{title}".\n\n{text}\n\n'
    "Write one question that a reader could answer from this passage. Use your own words; do not "
    "copy a sentence. Reply with the question only."
)
QUESTION_ASK = (
    'Write one question that this sentence answers. Reply with the question only.\nSentence: "{sentence}"'
)
QUESTION_SHOTS = (
    ("The Seine is crossed by 37 bridges within Paris.", "How many bridges cross the river inside Paris?"),
    (
        "A savings account pays interest to its owner every month.",
        "How often does a savings account pay interest?",
    ),
    (
        "The kettle switches itself off when the water reaches 100 degrees.",
        "At what temperature does the kettle switch itself off?",
    ),
)
"""Few-shot turns (written for this module, about nothing in any corpus): a sentence, and a
question about the specific fact it states."""
ANSWER_PROMPT = (
    "Passage:\n{text}\n\nAnswer the question using only the passage, in one sentence. If the "
    'passage does not answer it, reply "not answerable".\nQuestion: {question}'
)
STAGES = ("parsed", "grounded", "not_copied", "answerable", "unique")
_REFUSALS = ("not answerable", "cannot be answered", "does not answer", "doesn't answer", "no answer")
_QUESTION_LINE = re.compile(r"([^\n?]*\?)")
_LEAD = re.compile(r"^\s*(?:question\s*\d*\s*[:.-]|q\s*[:.-]|\d+[.)]|[-*])\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
_WORD = re.compile(r"[\"'(*]*[A-Za-z][a-z'-]*[\"')*]*[.,;:]?")


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


def focus_sentences(text: str) -> list[str]:
    """The chunk's prose sentences of FOCUS_MIN_WORDS+ words, most key terms first (ties keep
    text order): the facts a question can be pointed at. Code and table rows are skipped (a
    question about `>>> d = {...}` is about nothing a reader would ask)."""
    sentences = [" ".join(s.split()) for s in _SENTENCE_END.split(text)]
    usable = [s for s in sentences if len(s.split()) >= FOCUS_MIN_WORDS and _prose(s)]
    return sorted(usable, key=lambda s: -len(key_terms(s)))


def _prose(sentence: str) -> bool:
    words = sentence.split()
    if ">>>" in sentence or sentence.count("|") > 1:  # an interpreter session or a table row
        return False
    return sum(bool(_WORD.fullmatch(w)) for w in words) >= 0.7 * len(words)


def question_prompt(sentence: str) -> list[Message]:
    """The few-shot conversation that asks for a question about `sentence` (a 135M model given
    the whole chunk writes "What is the purpose of X?"; given one sentence after a few worked
    examples it asks about the fact the sentence states)."""
    turns: list[Message] = []
    for shot, question in QUESTION_SHOTS:
        turns += [Message("user", QUESTION_ASK.format(sentence=shot)), Message("assistant", question)]
    return [*turns, Message("user", QUESTION_ASK.format(sentence=sentence))]


@dataclass(frozen=True)
class QuestionOptions:
    """What a test-set run does; all of it is part of the configuration a resumed run must match."""

    n: int = 50
    """Chunks to ask about, spread evenly over the store."""
    candidates: int = 3
    """Questions tried per chunk (each about another sentence) until one passes every filter."""
    answer_check: bool = True
    """Run the round-trip filter (the model answers from the chunk)."""
    seed: int = 0
    """Shifts which chunks are sampled (0: the first chunk of each stride)."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise InvalidInputError(f"--n must be >= 1, got {self.n}")
        if self.candidates < 1:
            raise InvalidInputError(f"--candidates must be >= 1, got {self.candidates}")


def sample_chunks(chunks: Sequence[Chunk], n: int, seed: int = 0) -> list[Chunk]:
    """`n` chunks of at least MIN_CHUNK_WORDS words, spread evenly over the store in id order
    (deterministic for a seed; every part of the corpus is covered)."""
    usable = sorted((c for c in chunks if len(c.text.split()) >= MIN_CHUNK_WORDS), key=lambda c: c.chunk_id)
    n = min(n, len(usable))
    shift = random.Random(seed).randrange(len(usable)) if seed and usable else 0
    return [usable[(i * len(usable) + shift) // n] for i in range(n)] if n else []


@dataclass
class TestsetReport:
    """Candidates surviving each filter (in order), and chunks done and kept."""

    chunks: int = 0
    done: int = 0
    kept: int = 0
    generated: int = 0
    parsed: int = 0
    grounded: int = 0
    not_copied: int = 0
    answerable: int = 0
    unique: int = 0
    examples_rejected: dict[str, list[str]] = field(default_factory=dict)
    examples_kept: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    """The run's configuration (`run_config`)."""

    def add(self, record: dict[str, Any]) -> None:
        """Count one chunk's record (as `chunk_record` makes it)."""
        self.done += 1
        for candidate in record["candidates"]:
            self.generated += 1
            for stage in STAGES:
                if candidate["verdicts"].get(stage):
                    setattr(self, stage, getattr(self, stage) + 1)
            stage = candidate["rejected_by"]
            examples = self.examples_rejected.setdefault(stage, []) if stage else self.examples_kept
            if len(examples) < 3:
                examples.append(_example(candidate))
        self.kept += record["question"] is not None

    @property
    def rejected(self) -> int:
        return self.generated - self.unique

    def survival(self) -> dict[str, float]:
        """Share of generated candidates that pass each filter (cumulative, in order)."""
        return {s: round(getattr(self, s) / self.generated, 3) if self.generated else 0.0 for s in STAGES}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "survival": self.survival()}


def _example(candidate: dict[str, Any]) -> str:
    question = candidate["question"] or candidate["reply"][:200]
    answer = candidate.get("answer")
    return (
        f"{question} -> {answer[:120]}" if candidate["rejected_by"] == "answerable" and answer else question
    )


def chunk_title(chunk: Chunk) -> str:
    """The document's title: its metadata title, else the source's last path or topic part."""
    title = chunk.metadata.get("title")
    if isinstance(title, str) and title:
        return title
    return re.split(r"[/\\:]", chunk.source)[-1]


def candidate_prompts(chunk: Chunk, count: int) -> list[tuple[str | None, Prompt]]:
    """(focus sentence or None, prompt) for up to `count` candidates: first a question about the
    whole chunk (the prompt that survives the filters most often with the 135M model), then
    few-shot questions about its most informative sentences, one each."""
    whole: list[tuple[str | None, Prompt]] = [
        (None, CHUNK_PROMPT.format(title=chunk_title(chunk), text=chunk.text))
    ]
    return (whole + [(s, question_prompt(s)) for s in focus_sentences(chunk.text)])[:count]


def judge_candidate(
    chunk: Chunk,
    focus: str | None,
    prompt: Prompt,
    generate: Generator,
    answer_check: bool,
    kept: Sequence[set[str]],
) -> dict[str, Any]:
    """One question for `chunk` (about its sentence `focus`, if any), run through the filters
    until one rejects it."""
    reply = generate(prompt)
    question = parse_question(reply)
    candidate: dict[str, Any] = {"focus": focus, "reply": reply, "question": question, "answer": None}
    checks: list[tuple[str, Callable[[], bool]]] = [
        ("parsed", lambda: question is not None),
        ("grounded", lambda: grounded(question or "", chunk.text)),
        ("not_copied", lambda: not copied(question or "", chunk.text)),
        ("answerable", lambda: not answer_check or _answered(candidate, chunk, generate)),
        ("unique", lambda: not near_duplicate(question or "", kept)),
    ]
    verdicts: dict[str, bool] = {}
    candidate.update(verdicts=verdicts, rejected_by=None)
    for stage, check in checks:
        verdicts[stage] = check()
        if not verdicts[stage]:
            candidate["rejected_by"] = stage
            break
    return candidate


def _answered(candidate: dict[str, Any], chunk: Chunk, generate: Generator) -> bool:
    candidate["answer"] = generate(ANSWER_PROMPT.format(text=chunk.text, question=candidate["question"]))
    return answer_supported(candidate["answer"], chunk.text, candidate["question"])


def chunk_record(
    chunk: Chunk, generate: Generator, options: QuestionOptions, kept: Sequence[set[str]]
) -> dict[str, Any]:
    """Candidates for `chunk` (`candidate_prompts`) until one passes every filter."""
    candidates = []
    question = None
    for focus, prompt in candidate_prompts(chunk, options.candidates):
        candidate = judge_candidate(chunk, focus, prompt, generate, options.answer_check, kept)
        candidates.append(candidate)
        if candidate["rejected_by"] is None:
            question = candidate["question"]
            break
    return {
        "chunk_id": chunk.chunk_id,
        "source": chunk.source,
        "question": question,
        "candidates": candidates,
    }


def run_config(
    index: RagIndex, chunks: Sequence[Chunk], options: QuestionOptions, model: str
) -> dict[str, Any]:
    """What a resumed run must match: the store and its sampled chunks, the model, the options,
    the prompts' version and the filters' settings."""
    ids = hashlib.sha256("\n".join(c.chunk_id for c in chunks).encode()).hexdigest()[:16]
    return {
        "store": index.name,
        "sampled_chunks": ids,
        "model": model,
        **asdict(options),
        "prompt_version": PROMPT_VERSION,
        "copy_ngram": COPY_NGRAM,
        "duplicate_jaccard": DUPLICATE_JACCARD,
        "min_chunk_words": MIN_CHUNK_WORDS,
    }


def generate_testset(
    index: RagIndex,
    generate: Generator,
    options: QuestionOptions | None = None,
    *,
    model: str = "",
    progress: Path | None = None,
    on_chunk: Callable[[TestsetReport], None] | None = None,
) -> tuple[list[dict[str, Any]], TestsetReport]:
    """Up to one question per sampled chunk, filtered; the rows and the filter counts.

    With `progress`, each chunk's record is appended to that file as soon as it is made, and the
    chunks an earlier run with the same configuration (`model` names the generator in it)
    recorded there are not asked again."""
    options = options or QuestionOptions()
    chunks = sample_chunks(index.store.chunks(), options.n, options.seed)
    if not chunks:
        raise InvalidInputError(f"store {index.name!r} has no chunk of {MIN_CHUNK_WORDS}+ words to ask about")
    config = run_config(index, chunks, options, model)
    records = read_progress(progress, config) if progress else []
    report = TestsetReport(chunks=len(chunks), config=config)
    kept: list[set[str]] = []
    for record in records:
        _count(record, report, kept)
    if on_chunk:
        on_chunk(report)
    done = {r["chunk_id"] for r in records}
    writer = ProgressWriter(progress, config) if progress else None
    try:
        for chunk in chunks:
            if chunk.chunk_id in done:
                continue
            record = chunk_record(chunk, generate, options, kept)
            if writer:
                writer.append(record)
            records.append(record)
            _count(record, report, kept)
            if on_chunk:
                on_chunk(report)
    finally:
        if writer:
            writer.close()
    rows = [{"question": r["question"], "source": r["source"], "chunk_id": r["chunk_id"]} for r in records]
    return [r for r in rows if r["question"] is not None], report


def _count(record: dict[str, Any], report: TestsetReport, kept: list[set[str]]) -> None:
    report.add(record)
    if record["question"] is not None:
        kept.append(key_terms(record["question"]))


def write_testset(rows: Sequence[dict[str, Any]], path: Path) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_summary(report: TestsetReport, path: Path) -> None:
    """The sidecar summary: the run's configuration and its per-filter survival counts."""
    atomic_write_text(path, json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")


def model_generator(
    spec: str, max_new_tokens: int = 64, endpoint_model: str = "default", threads: int | None = None
) -> Generator:
    """Greedy replies from a model `lmfoundry.load` knows, or from an OpenAI-compatible endpoint
    when `spec` is an http(s) URL (asked for `endpoint_model`). `threads` caps llama.cpp's CPU
    threads (on a machine shared with other jobs, 1 thread was 10x faster than all cores)."""
    if spec.startswith(("http://", "https://")):
        return _endpoint_generator(spec, endpoint_model, max_new_tokens)
    model = load_model(spec, threads=threads)
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)

    def reply(prompt: Prompt) -> str:
        turns = [Message("user", prompt)] if isinstance(prompt, str) else prompt
        if model.has_chat_template():
            return model.generate(turns, params).text
        return model.generate(
            "\n\n".join(f"{m.role}: {m.content}" for m in turns) + "\n\nassistant:", params
        ).text

    return reply


def lazy_generator(make: Callable[[], Generator]) -> Generator:
    """A generator that loads its model on the first prompt: a rerun of a finished or
    misconfigured run answers without loading one."""
    loaded: list[Generator] = []

    def reply(prompt: Prompt) -> str:
        if not loaded:
            loaded.append(make())
        return loaded[0](prompt)

    return reply


def _endpoint_generator(url: str, model: str, max_tokens: int) -> Generator:
    openai = require("openai", extra="client")
    client = openai.OpenAI(base_url=url, api_key="not-needed", timeout=120.0, max_retries=2)

    def reply(prompt: Prompt) -> str:
        turns = [Message("user", prompt)] if isinstance(prompt, str) else prompt
        try:
            response = client.chat.completions.create(
                model=model,
                messages=[{"role": m.role, "content": m.content} for m in turns],
                temperature=0.0,
                max_tokens=max_tokens,
            )
        except Exception as exc:  # the openai package raises its own hierarchy
            raise InvalidInputError(f"question generator endpoint {url} failed: {exc}") from exc
        return response.choices[0].message.content or ""

    return reply
