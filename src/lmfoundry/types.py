"""Plain dataclasses shared by every part of lmfoundry. Stdlib only: import from anywhere."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from lmfoundry.errors import InvalidInputError

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Message:
    """One chat turn."""

    role: Role
    content: str
    tool_calls: tuple[dict[str, Any], ...] = ()
    """An assistant turn's function calls, in the OpenAI format (id, type, function name/arguments)."""
    tool_call_id: str | None = None
    """A tool turn: the id of the call it answers."""
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI message shape (what chat templates and clients expect)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [dict(call) for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


ConstraintKind = Literal["json", "regex", "choice", "grammar"]


@dataclass(frozen=True)
class Constraint:
    """What the generated text must match, enforced token by token (grammar-constrained decoding).

    `spec` is text so the value stays hashable and printable: a JSON schema as JSON (kind "json"),
    a regular expression ("regex"), a JSON list of strings ("choice"), or a Lark or GBNF grammar
    ("grammar"). `lmfoundry.generate.constraints` compiles it for a model's tokenizer.
    """

    kind: ConstraintKind
    spec: str
    end_on_repeat: str = ""
    """When set, the output ends as soon as a segment closed by this delimiter repeats an earlier
    one (tool calls: small models otherwise repeat one call until the token limit)."""

    @classmethod
    def json(cls, schema: dict[str, Any] | None = None) -> Constraint:
        """Any JSON object (no schema), or JSON valid against `schema`."""
        import json

        return cls("json", json.dumps(schema if schema is not None else {"type": "object"}))

    @classmethod
    def regex(cls, pattern: str) -> Constraint:
        return cls("regex", pattern)

    @classmethod
    def choice(cls, options: list[str]) -> Constraint:
        import json

        if not options or not all(isinstance(o, str) and o for o in options):
            raise InvalidInputError("a choice constraint needs a non-empty list of non-empty strings")
        return cls("choice", json.dumps(list(options)))

    @classmethod
    def grammar(cls, text: str) -> Constraint:
        """A Lark grammar (llguidance's dialect) or a llama.cpp GBNF grammar."""
        return cls("grammar", text)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the next token. temperature=0 means greedy (deterministic)."""

    temperature: float = 0.7
    top_k: int = 0
    """Keep only the k most likely tokens (0 = off)."""
    top_p: float = 1.0
    """Nucleus sampling: smallest set of tokens whose probability mass reaches top_p."""
    min_p: float = 0.0
    """Drop tokens whose probability is below min_p times the top token's."""
    repetition_penalty: float = 1.0
    """>1 discourages tokens already present (CTRL-style divide/multiply of logits)."""
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    constraint: Constraint | None = None
    """Text the output must match (JSON schema, regex, choices, grammar); None = free text."""

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (math.isfinite(self.temperature) and self.temperature >= 0, "temperature must be >= 0"),
            (self.top_k >= 0, "top_k must be >= 0"),
            (0.0 < self.top_p <= 1.0, "top_p must be in (0, 1]"),
            (0.0 <= self.min_p < 1.0, "min_p must be in [0, 1)"),
            (
                math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0,
                "repetition_penalty must be > 0",
            ),
            (self.max_new_tokens >= 0, "max_new_tokens must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInputError(f"invalid sampling parameter: {message}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def replace(self, **changes: Any) -> SamplingParams:
        values = {**self.__dict__, **{k: v for k, v in changes.items() if v is not None}}
        if isinstance(values.get("stop"), list):
            values["stop"] = tuple(values["stop"])
        return SamplingParams(**values)


@dataclass(frozen=True)
class Chunk:
    """A span of a source document, with character offsets into the document text."""

    chunk_id: str
    source: str
    text: str
    start: int
    end: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its score (higher is better)."""

    chunk: Chunk
    score: float


@dataclass(frozen=True)
class Example:
    """One evaluation or training example."""

    id: str
    input: str
    reference: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
