"""The judge's answer as JSON: a short reasoning, then the score or verdict.

Why: regular expressions over free text miss verdicts (counted as unparseable, which shrinks the
sample). A local judge decodes under a grammar that admits exactly
`{"reasoning": "...", "score": N}` (or `"verdict": "A" | "B" | "tie"`), with the reasoning held
to a token budget so the verdict always fits in the generation limit: every answer parses. An
endpoint judge gets the same shape as an OpenAI `response_format` JSON schema. Judges that cannot
be constrained (plugins, rules) still answer in text, read by the regex parsers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lmfoundry.types import Constraint

VERDICT_VALUES = ("A", "B", "tie")
MIN_REASON_TOKENS = 4


@dataclass(frozen=True)
class AnswerFormat:
    """The field a judge must fill (`score` or `verdict`) and its allowed values."""

    field: str
    values: tuple[str, ...]
    """JSON literals: "1".."5" for scores, '"A"', '"B"', '"tie"' for verdicts."""

    def instruction(self) -> str:
        shown = " or ".join(self.values) if len(self.values) <= 3 else f"{self.values[0]}..{self.values[-1]}"
        return f'Reply with JSON only: {{"reasoning": "<one or two sentences>", "{self.field}": {shown}}}'

    def frame(self) -> str:
        """The reply without reasoning, with the longest value: what must always fit."""
        return json.dumps({"reasoning": "", self.field: json.loads(max(self.values, key=len))})

    def constraint(self, reason_tokens: int) -> Constraint:
        """A grammar for local judges: the reasoning capped at `reason_tokens` tokens."""
        options = " | ".join(json.dumps(v) for v in self.values)
        return Constraint.grammar(
            "\n".join(
                [
                    f'start: "{{\\"reasoning\\": \\"" reason "\\", \\"{self.field}\\": " value "}}"',
                    f'reason[max_tokens={reason_tokens}]: /[^"\\\\\\x00-\\x1f]*/',
                    f"value: {options}",
                ]
            )
        )

    def json_schema(self) -> dict[str, Any]:
        """The same shape for OpenAI-compatible endpoints (`response_format`)."""
        allowed = [json.loads(v) for v in self.values]
        return {
            "type": "object",
            "properties": {"reasoning": {"type": "string", "maxLength": 300}, self.field: {"enum": allowed}},
            "required": ["reasoning", self.field],
            "additionalProperties": False,
        }


def score_format(min_score: int, max_score: int) -> AnswerFormat:
    return AnswerFormat("score", tuple(str(s) for s in range(min_score, max_score + 1)))


VERDICT_FORMAT = AnswerFormat("verdict", tuple(json.dumps(v) for v in VERDICT_VALUES))


def json_field(text: str, field: str) -> Any:
    """`field` of a JSON object reply, or None when the text is not one."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    return data.get(field) if isinstance(data, dict) else None
