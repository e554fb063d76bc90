"""The deterministic half of answer-level RAG evaluation: claims, context precision and recall,
citation checks, refusal detection, and means with bootstrap CIs.

Everything here is a pure function of the reader's output and the question's labels (its source
documents or chunk ids), so it is exact and free; what needs a judge (is a claim supported, is
the answer relevant) is in `rag_answer_judge.py`. A metric that does not apply to a question
(no labels, no citations, an unanswerable question) is None for it and left out of the mean,
and the summary says over how many questions each mean was taken.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from lmfoundry.eval.metrics import citation_precision, is_refusal
from lmfoundry.rag.cite import FORCED_PREFIX, cited_labels, declined
from lmfoundry.stats import bootstrap_mean

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
"""Sentence ends and blank lines; a single newline is a wrapped line (the reference is hard-wrapped
and readers copy it), not a new claim."""
_MARKER = re.compile(r"\s*\[[^\[\]]*\]|\b" + FORCED_PREFIX + r"\s+\d+\s*,?\s*", re.IGNORECASE)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")
MIN_CLAIM_WORDS = 3
"""Shorter fragments ("Yes.", list markers) state nothing a judge could check."""


def strip_citations(text: str) -> str:
    """`text` without `[n]` labels and a forced "According to Document N," opening."""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(_MARKER.sub(" ", text).split()))


def split_claims(answer: str, max_claims: int = 5) -> list[str]:
    """The answer's sentences without citation markers: the claims faithfulness checks.

    A sentence is the unit (ragas asks an LLM to break the answer into atomic statements; a 135M
    judge cannot do that reliably, and sentences are reproducible). At most `max_claims`, so a
    rambling answer costs a bounded number of judge calls.
    """
    claims = []
    for sentence in _SENTENCE.split(answer):
        text = strip_citations(sentence)
        if len(text.split()) >= MIN_CLAIM_WORDS:
            claims.append(text)
    return claims[:max_claims]


def refused(answer: str, no_answer: str) -> bool:
    """Did the reader decline ("The context does not say.", "I don't know")? Empty is not a refusal."""
    return bool(answer.strip()) and (declined(answer, no_answer) or is_refusal(answer))


def is_relevant(source: str, chunk_id: str, sources: Iterable[str], chunk_ids: Iterable[str]) -> bool:
    """A hit counts when its chunk id, or its source document, is among the question's labels."""
    return chunk_id in set(chunk_ids) or source in set(sources)


def context_precision(relevance: Sequence[bool]) -> float:
    """Average precision of the ranked context: mean of precision@k over the ranks k holding a
    relevant chunk, 0 when none does (ragas' context precision, with id-based relevance)."""
    hits, total = 0, 0.0
    for rank, relevant in enumerate(relevance, start=1):
        if relevant:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def context_recall(found: Iterable[str], labels: Iterable[str]) -> float:
    """Share of the question's labelled sources (or chunk ids) present in the context."""
    wanted = set(labels)
    return len(wanted & set(found)) / len(wanted) if wanted else 0.0


def citation_checks(
    answer: str, cited_sources: Sequence[str], n_context: int, sources: Iterable[str]
) -> dict[str, float | None]:
    """Deterministic citation correctness of one answer.

    - `citation_valid`: share of the numeric labels the reader *wrote* (`[2]`, `Document 1`) that
      name a document in its context (None when it wrote none: nothing to check).
    - `citation_relevant`: share of the cited documents (written or attributed) whose source is a
      labelled source of the question (None without labels; 0 when nothing is cited).
    """
    labels = [label for label in cited_labels(answer) if label.isdigit()]  # not code like a[1:2]
    valid = [label for label in labels if int(label) < n_context]
    wanted = set(sources)
    return {
        "citation_valid": len(valid) / len(labels) if labels else None,
        "citation_relevant": citation_precision(cited_sources, wanted) if wanted else None,
    }


def mean_ci(
    values: Sequence[float], n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """Mean and percentile-bootstrap CI of `values` (`lmfoundry.stats.bootstrap_mean`); None
    fields when there are no values."""
    if not values:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    return {**bootstrap_mean(values, n_boot, seed, confidence), "n": len(values)}


SCORED = (
    "faithfulness",
    "answer_relevance",
    "context_precision",
    "context_recall",
    "citation_valid",
    "citation_relevant",
    "citation_support",
    "refusal",
    "false_refusal",
    "reference_f1",
)
"""Per-question scores summarized with a CI; `refusal` over unanswerable questions only,
`false_refusal` over answerable ones."""


def summarize(rows: Sequence[dict[str, Any]], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per-metric mean with CI over the questions where it applies, and the output counts."""
    n = len(rows)
    empty = sum(r["empty"] for r in rows)
    truncated = sum(r["truncated"] for r in rows)
    metrics = {
        name: mean_ci([r["scores"][name] for r in rows if r["scores"].get(name) is not None], n_boot, seed)
        for name in SCORED
    }
    return {
        "n": n,
        "n_answerable": sum(r["answerable"] for r in rows),
        "n_unanswerable": sum(not r["answerable"] for r in rows),
        "n_empty": empty,
        "n_truncated": truncated,
        "empty_rate": empty / n if n else None,
        "truncated_rate": truncated / n if n else None,
        "n_unparseable_verdicts": sum(r["judge"]["n_unparseable"] for r in rows),
        "metrics": metrics,
    }
