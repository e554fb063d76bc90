"""Pieces of the RAG benchmark (`bench/rag.py`) that deserve unit tests: the packaged question
set about `builtin:python-reference`, which topics count as answering a question, ranking
metrics (recall@k, MRR), the answer-keyword check, and the synthetic scale-up of a corpus.

Some language-reference topics are sections of others (the `for` topic is a section of
`compound`, `customization` of `specialnames`), so a chunk of the containing topic holds the
same answer. `containing_topics` finds them from the texts themselves; the benchmark reports the
strict score (only the labelled topic counts) and the lenient one (containing topics count too).
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lmfoundry.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

QUESTIONS_PATH = Path(__file__).parent / "data" / "questions_python_reference.jsonl"
SOURCE_PREFIX = "python-reference:"
CONTAINMENT = 0.75
"""A topic contains another when it holds this share of the other's paragraphs verbatim."""
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Question:
    question: str
    topic: str
    answer_keywords: tuple[str, ...]


def load_questions(path: Path | None = None) -> list[Question]:
    """The question set (default: the packaged one), validated line by line."""
    path = path or QUESTIONS_PATH
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            generated = "topic" not in row and str(row.get("source", "")).startswith(SOURCE_PREFIX)
            if generated:  # a row of `lmf rag testset`: retrieval only, no answer keywords (--skip e2e)
                row = {**row, "topic": row["source"][len(SOURCE_PREFIX) :], "answer_keywords": []}
            q = Question(str(row["question"]), str(row["topic"]), tuple(row["answer_keywords"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(
                f"{path}:{number}: expected {{question, topic, answer_keywords}} or a `lmf rag testset` "
                f"row {{question, source, chunk_id}}: {exc}"
            ) from exc
        if not q.question.strip() or not (q.answer_keywords or generated):
            raise InvalidInputError(f"{path}:{number}: empty question or no answer keywords")
        questions.append(q)
    return questions


def normalise(text: str) -> str:
    """Lower case with runs of whitespace collapsed (topic texts wrap lines anywhere)."""
    return _SPACE.sub(" ", text).strip().lower()


def _paragraphs(text: str) -> list[str]:
    return [normalise(p) for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 40]


@functools.lru_cache(maxsize=1)
def _topic_paragraphs() -> dict[str, tuple[list[str], frozenset[str]]]:
    from pydoc_data.topics import topics

    table = {}
    for name, text in topics.items():
        paras = _paragraphs(text)
        table[name] = (paras, frozenset(paras))
    return table


def containing_topics(topic: str, threshold: float = CONTAINMENT) -> set[str]:
    """Other topics that hold at least `threshold` of `topic`'s paragraphs verbatim."""
    table = _topic_paragraphs()
    if topic not in table:
        raise InvalidInputError(f"{topic!r} is not a python-reference topic")
    paras = table[topic][0]
    if not paras:
        return set()
    return {
        other
        for other, (_, pool) in table.items()
        if other != topic and sum(p in pool for p in paras) / len(paras) >= threshold
    }


def accepted_sources(topic: str, lenient: bool) -> set[str]:
    """Sources whose chunks count as answering a question labelled `topic`."""
    topics = {topic} | (containing_topics(topic) if lenient else set())
    return {SOURCE_PREFIX + t for t in topics}


def answer_matches(answer: str, keywords: Sequence[str]) -> tuple[bool, bool]:
    """(strict, lenient): the answer contains all the keywords / at least one of them."""
    text = normalise(answer)
    found = [normalise(k) in text for k in keywords]
    return all(found), any(found)


def scale_vectors(vectors: np.ndarray, n: int, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """`n` unit vectors: the rows of `vectors` repeated and perturbed by Gaussian noise
    (std `noise` per component), so near-duplicates do not tie exactly."""
    import numpy as np

    if len(vectors) == 0:
        raise InvalidInputError("cannot scale up an empty set of vectors")
    rng = np.random.default_rng(seed)
    base = vectors[np.arange(n) % len(vectors)]
    out = base + rng.normal(0.0, noise, size=base.shape).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def scale_texts(texts: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """`n` texts: copy i is text i % len(texts) with its words rotated by a random offset and a
    unique marker word appended, so BM25 sees distinct documents of realistic length."""
    if not texts:
        raise InvalidInputError("cannot scale up an empty set of texts")
    rng = random.Random(seed)
    words = [t.split() for t in texts]
    out = []
    for i in range(n):
        w = words[i % len(words)]
        if i < len(words) or not w:
            out.append(texts[i % len(texts)])
            continue
        cut = rng.randrange(len(w))
        out.append(" ".join(w[cut:] + w[:cut] + [f"synthetic{i}"]))
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty sample."""
    ordered = sorted(values)
    if not ordered:
        raise InvalidInputError("percentile of an empty sample")
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
