"""What a topic builder writes a conversation with: a `Scene` of random choices and its result.

A builder (see `synthetic_topics.py`) draws the facts of one conversation from a `Scene` and
writes each turn as `s.say(speaker, phrasing, ...)`, one phrasing chosen at random, or as a plain
`(speaker, text)` tuple when the line is fixed; `turn_list` drops the optional turns left out
(`None`). Every random choice goes through the scene's one generator, in the order written.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from lmfoundry.finetune.data import synthetic_vocab as V

T = TypeVar("T")
P1, P2 = "#Person1#", "#Person2#"
Turn = tuple[int, str]


@dataclass(frozen=True)
class Conversation:
    """One generated conversation: turns as (speaker 1|2, text), a summary, and its setting."""

    turns: list[Turn]
    summary: str
    relation: str  # "service" (customer and staff), "friends" or "formal": picks fitting small talk


class Scene:
    """Random choices for one conversation; first names are never reused within a scene."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._used: set[str] = set()

    def pick(self, options: Sequence[T]) -> T:
        return self.rng.choice(list(options))

    def say(self, speaker: int, *phrasings: str) -> Turn:
        """A turn of `speaker` in one of `phrasings`, chosen at random (a fixed line is a plain tuple)."""
        return (speaker, self.pick(phrasings))

    def conversation(self, turns: list[Turn], relation: str, *summaries: str) -> Conversation:
        """The finished conversation, with one of the summary phrasings drawn last."""
        return Conversation(turns, self.pick(summaries), relation)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def number(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def first(self) -> str:
        name = self.pick([n for n in V.FIRST_NAMES if n not in self._used])
        self._used.add(name)
        return name

    def full(self) -> str:
        return f"{self.first()} {self.pick(V.SURNAMES)}"


def turn_list(*items: Turn | None) -> list[Turn]:
    """The turns given, without the optional ones left out (`None`)."""
    return [item for item in items if item is not None]
