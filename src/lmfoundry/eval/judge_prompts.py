"""What a judge model is asked (rubric and pairwise prompts) and how its free text is read back.

Parsers return None when the text holds no score or verdict: the caller counts those
(`n_unparseable`) instead of inventing a default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lmfoundry.config import load_yaml
from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.eval.judge_format import VERDICT_FORMAT, json_field, score_format

DEFAULT_RUBRIC_TEXT = (
    "5: fully correct, complete and clear; 4: correct with minor gaps; 3: partly correct or "
    "partly relevant; 2: mostly wrong or off-topic; 1: wrong, empty or nonsensical."
)


VERDICTS = ("a", "b", "tie")


@dataclass(frozen=True)
class Rubric:
    """An integer scale and the text that says what each score means."""

    text: str = DEFAULT_RUBRIC_TEXT
    min_score: int = 1
    max_score: int = 5
    name: str = "quality"

    def __post_init__(self) -> None:
        if self.min_score >= self.max_score:
            raise InvalidInputError(f"rubric scale needs min < max, got {self.min_score}..{self.max_score}")
        if not self.text.strip():
            raise InvalidInputError("rubric text is empty")


def load_rubric(path: str | Path) -> Rubric:
    """A YAML file `{name, min, max, text}` or any other file whose text is the rubric (1-5)."""
    path = Path(path)
    if not path.is_file():
        raise LmfError(f"rubric file not found: {path}")
    if path.suffix not in (".yaml", ".yml"):
        return Rubric(text=path.read_text(encoding="utf-8"))
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: a rubric YAML is a mapping with name/min/max/text")
    unknown = set(data) - {"name", "min", "max", "text"}
    if unknown:
        raise InvalidInputError(
            f"{path}: unknown rubric keys {sorted(unknown)} (allowed: name, min, max, text)"
        )
    try:
        return Rubric(
            text=str(data["text"]),
            min_score=int(data.get("min", 1)),
            max_score=int(data.get("max", 5)),
            name=str(data.get("name", "quality")),
        )
    except KeyError as exc:
        raise InvalidInputError(f"{path}: rubric needs a 'text' key") from exc
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{path}: rubric min/max must be integers ({exc})") from exc


def rubric_prompt(rubric: Rubric, prompt: str, response: str, reference: str = "") -> str:
    lines = [
        "You are an impartial grader. Rate the response to the task below using this rubric.",
        "",
        f"Rubric ({rubric.name}, integer from {rubric.min_score} to {rubric.max_score}):",
        rubric.text.strip(),
        "",
        "[Task]",
        prompt.strip(),
    ]
    if reference.strip():
        lines += ["", "[Reference answer]", reference.strip()]
    lines += [
        "",
        "[Response]",
        response.strip(),
        "",
        score_format(rubric.min_score, rubric.max_score).instruction(),
    ]
    return "\n".join(lines)


def pairwise_prompt(prompt: str, response_a: str, response_b: str) -> str:
    return "\n".join(
        [
            "You are an impartial judge. Compare the two responses to the task below and decide which "
            "is better (more correct, complete and helpful). The order of the responses is random; "
            "do not let it influence you.",
            "",
            "[Task]",
            prompt.strip(),
            "",
            "[Response A]",
            response_a.strip(),
            "",
            "[Response B]",
            response_b.strip(),
            "",
            VERDICT_FORMAT.instruction(),
        ]
    )


_NUMBER = r"(-?\d+(?:\.\d+)?)"


_LABELLED_SCORE = re.compile(
    r"\b(?:score|rating|grade)\b\s*(?:is|of|=|:)?\s*[*_\"'\[(]*\s*" + _NUMBER, re.IGNORECASE
)


_OUT_OF = re.compile(_NUMBER + r"\s*(?:/|out of)\s*(\d+)\b", re.IGNORECASE)


_BARE = re.compile(r"^[\s*_\"'\[(]*" + _NUMBER + r"[\s*_\"'\].)!]*$")


def parse_score(text: str, min_score: int = 1, max_score: int = 5) -> int | None:
    """The integer score in a judge's text, or None when there is no unambiguous in-range score.

    A JSON reply's "score" field decides; otherwise this looks, in order, for the last labelled score ("Score: 4", "**Rating:** 4/5", "score = 4"),
    then the last "N/M" or "N out of M" with M the scale maximum, then a reply that is only a
    number. Fractions, out-of-range numbers and unlabelled numbers inside prose are rejected:
    a wrong score is worse than a counted unparseable one.
    """
    structured = json_field(text, "score")
    if isinstance(structured, int) and not isinstance(structured, bool):
        return structured if min_score <= structured <= max_score else None
    candidates = [m.group(1) for m in _LABELLED_SCORE.finditer(text)]
    if not candidates:
        candidates = [m.group(1) for m in _OUT_OF.finditer(text) if int(m.group(2)) == max_score]
    if not candidates:
        bare = _BARE.match(text)
        candidates = [bare.group(1)] if bare else []
    if not candidates:
        return None
    value = float(candidates[-1])
    if not value.is_integer() or not min_score <= value <= max_score:
        return None
    return int(value)


_LABELLED_VERDICT = re.compile(
    r"\b(?:verdict|winner|answer|choice|better response)\b\s*(?:is|:|=)?\s*[*_\"'\[(]*\s*"
    r"(?:response\s+)?(a|b|tie|draw|equal)\b",
    re.IGNORECASE,
)


_BRACKETED = re.compile(r"\[\[\s*(a|b|c|tie)\s*\]\]", re.IGNORECASE)


_SENTENCE = re.compile(r"\bresponse\s+(a|b)\s+is\s+better\b", re.IGNORECASE)


_BARE_VERDICT = re.compile(r"^[\s*_\"'\[(]*(a|b|tie)[\s*_\"'\].)!]*$", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """ "a", "b" or "tie" (positions, not models) from a judge's text, or None.

    Accepts a JSON reply's "verdict" field, "Verdict: B", "[[A]]" (MT-Bench style, "[[C]]" = tie), "Response A is better" and a
    bare "A"; when several appear, the last one wins (judges reason first, then conclude).
    """
    structured = json_field(text, "verdict")
    if isinstance(structured, str) and structured.lower() in VERDICTS:
        return structured.lower()
    for pattern in (_LABELLED_VERDICT, _BRACKETED, _SENTENCE, _BARE_VERDICT):
        found = [m.group(1).lower() for m in pattern.finditer(text)]
        if found:
            last = found[-1]
            return last if last in ("a", "b") else "tie"
    return None
