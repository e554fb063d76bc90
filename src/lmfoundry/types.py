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

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


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
