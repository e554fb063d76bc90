"""Eval fixtures: a deterministic stand-in generator (the dependency, not the unit under test)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lmfoundry.types import SamplingParams


@dataclass(frozen=True)
class FakeGeneration:
    text: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    total_s: float


class ScriptedGenerator:
    """Answers with `answer(prompt)`; timings are a fixed function of the answer length."""

    def __init__(self, answer: Callable[[str], str], name: str = "scripted", ttft_s: float = 0.05):
        self.answer = answer
        self.name = name
        self.ttft_s = ttft_s
        self.calls: list[tuple[str, SamplingParams]] = []

    def generate(self, prompt: str, params: SamplingParams) -> FakeGeneration:
        self.calls.append((prompt, params))
        text = self.answer(prompt)
        tokens = max(len(text.split()), 1)
        return FakeGeneration(
            text, len(prompt.split()), tokens, self.ttft_s, self.ttft_s + 0.01 * (tokens - 1)
        )


@pytest.fixture
def scripted() -> type[ScriptedGenerator]:
    return ScriptedGenerator


DIALOGUES = [
    {
        "id": "d1",
        "dialogue": "#Person1#: Are you coming to the party tonight?\n#Person2#: Yes, I will bring some cake.",
        "summary": "#Person2# will come to the party and bring cake.",
        "topic": "party",
    },
    {
        "id": "d2",
        "dialogue": "#Person1#: The printer is broken again.\n#Person2#: I will call the technician.",
        "summary": "#Person2# will call the technician to fix the printer.",
        "topic": "office",
    },
    {
        "id": "d3",
        "dialogue": "#Person1#: Can we move the meeting to Friday?\n#Person2#: Friday at ten works for me.",
        "summary": "They move the meeting to Friday at ten.",
        "topic": "meeting",
    },
]


@pytest.fixture
def dialogsum_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "dialogsum"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in DIALOGUES), encoding="utf-8")
    return folder
