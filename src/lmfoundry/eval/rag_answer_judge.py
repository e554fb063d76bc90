"""The judged half of answer-level RAG evaluation: is each claim supported by a cited chunk, and
does the answer address the question.

Verdicts are structured: a local judge decodes under a grammar that admits only
`{"reasoning": "...", "supported": "yes" | "no"}` (or `"score": 1..5`), an endpoint judge gets the
same JSON schema (`judge_format.AnswerFormat`). A judge that cannot be constrained answers in
text; a reply that holds no verdict is counted as unparseable and left out, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lmfoundry.eval.judge_format import AnswerFormat, json_field, score_format
from lmfoundry.eval.judge_prompts import parse_score
from lmfoundry.eval.judges import JudgeBackend, complete_judgment

SUPPORT_FORMAT = AnswerFormat("supported", ('"yes"', '"no"'))
RELEVANCE_FORMAT = score_format(1, 5)
_YES_NO = re.compile(r"^[\s*_\"'\[(]*(yes|no)\b", re.IGNORECASE)

SUPPORT_PROMPT = """You check whether a statement is supported by a context passage.

Context:
{context}

Statement: {claim}

Answer "yes" only if the context states or directly implies the statement; answer "no" if the
context does not mention it or contradicts it. {instruction}"""

RELEVANCE_PROMPT = """You rate how well an answer addresses a question (not whether it is true).

Question: {question}
{reference}
Answer: {answer}

5: answers exactly what was asked; 4: answers it with extra or missing detail; 3: partly about
the question; 2: mostly about something else; 1: off-topic or empty. {instruction}"""


@dataclass
class Verdicts:
    """A question's judge calls: per-claim support, per-citation support, relevance, raw replies."""

    claims: list[dict[str, Any]] = field(default_factory=list)
    relevance: float | None = None
    raw: list[str] = field(default_factory=list)
    n_unparseable: int = 0

    def faithfulness(self) -> float | None:
        """Share of the judged claims supported by at least one cited chunk."""
        judged = [c["supported"] for c in self.claims if c["supported"] is not None]
        return sum(judged) / len(judged) if judged else None

    def citation_support(self, documents: Sequence[int]) -> float | None:
        """Share of the cited documents that support at least one claim."""
        if not documents or not self.claims:
            return None
        return sum(any(d in c["supported_by"] for c in self.claims) for d in documents) / len(documents)

    def to_dict(self) -> dict[str, Any]:
        return {"claims": self.claims, "relevance": self.relevance, "n_unparseable": self.n_unparseable,
                "raw": self.raw}  # fmt: skip


def parse_support(text: str) -> bool | None:
    """True/False from `{"supported": "yes"|"no"}` or a reply that starts with yes/no; else None
    (a "no" inside prose is not a verdict)."""
    value = json_field(text, "supported")
    if value is None:
        match = _YES_NO.match(text)
        value = match.group(1) if match else None
    if not isinstance(value, str) or value.lower() not in ("yes", "no"):
        return None
    return value.lower() == "yes"


def judge_support(
    judge: JudgeBackend, claim: str, contexts: dict[int, str], verdicts: Verdicts, seed: int = 0
) -> None:
    """Ask whether each cited document (number -> text) supports `claim`; record the verdict.

    A claim with no cited document is unsupported without a judge call: faithfulness is to the
    citations, and an answer that cites nothing backs nothing.
    """
    supported_by: list[int] = []
    parsed = 0
    for number, text in contexts.items():
        prompt = SUPPORT_PROMPT.format(context=text, claim=claim, instruction=SUPPORT_FORMAT.instruction())
        raw = complete_judgment(judge, prompt, seed=seed, answer=SUPPORT_FORMAT)
        verdict = parse_support(raw)
        verdicts.raw.append(raw)
        if verdict is None:
            verdicts.n_unparseable += 1
            continue
        parsed += 1
        if verdict:
            supported_by.append(number)
    supported = bool(supported_by) if parsed or not contexts else None
    verdicts.claims.append({"claim": claim, "supported": supported, "supported_by": supported_by})


def judge_relevance(
    judge: JudgeBackend, question: str, answer: str, reference: str, verdicts: Verdicts, seed: int = 0
) -> None:
    """A 1-5 relevance score, normalised to 0..1 (None when the reply holds no score)."""
    shown = f"Reference answer: {reference}\n" if reference else ""
    prompt = RELEVANCE_PROMPT.format(question=question, reference=shown, answer=answer,
                                     instruction=RELEVANCE_FORMAT.instruction())  # fmt: skip
    raw = complete_judgment(judge, prompt, seed=seed, answer=RELEVANCE_FORMAT)
    verdicts.raw.append(raw)
    score = parse_score(raw, 1, 5)
    if score is None:
        verdicts.n_unparseable += 1
    verdicts.relevance = None if score is None else (score - 1) / 4
