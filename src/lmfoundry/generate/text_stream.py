"""Token ids in, text out: incremental detokenizing, stop strings and UTF-8 hold-back for one
generation, fed one token at a time.

Why push-based: the engine pulls tokens from a backend (`run_stream`), while the server receives
them from a scheduler thread and turns them into text on its event loop; both feed a `TextStream`,
so served text is exactly what `lmf generate` prints.

Why incremental: decoding the whole completion after every token costs O(n) per token (O(n^2) per
answer). A `TextStream` decodes a short window instead: the tokens not yet turned into text plus
the group before them (`_prefix`..end), and emits what the window adds to the text of that group.
Decoding starts at the same token in both, so tokenizers that treat the first token of a decode
specially (SentencePiece's leading space) give the same text as one decode of the whole. A window
that ends inside a multi-byte character (U+FFFD at its end) waits for the next token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    """"stop" (EOS or a stop string) or "length" (max_new_tokens reached)."""
    ttft_s: float
    total_s: float
    backend: str
    token_ids: list[int] = field(default_factory=list)
    stopped_by: str | None = None
    """The stop string that ended the text (None for EOS or the length limit)."""

    @property
    def tokens_per_s(self) -> float:
        """Decode speed: tokens after the first, over the time after the first."""
        decode_s = self.total_s - self.ttft_s
        return (self.completion_tokens - 1) / decode_s if self.completion_tokens > 1 and decode_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
            "ttft_s": round(self.ttft_s, 6),
            "total_s": round(self.total_s, 6),
            "tokens_per_s": round(self.tokens_per_s, 3),
            "backend": self.backend,
        }


@dataclass
class StreamEvent:
    """A piece of generated text; the last event carries the final result."""

    delta: str
    result: GenerationResult | None = None


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters might be the start of a stop string (or a split UTF-8 char)."""
    hold = 1 if text.endswith("\ufffd") else 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                hold = max(hold, size)
                break
    return hold


class TextStream:
    """One generation's text, built token by token (see module docstring).

    `feed(token)` returns the text that is now safe to show ("" while a stop string or a character
    may still be forming); `finished` turns True at EOS or a stop string; `final()` returns the
    last event, carrying the `GenerationResult`."""

    def __init__(
        self,
        decode: Callable[[list[int]], str],
        eos_ids: frozenset[int],
        stops: tuple[str, ...],
        *,
        prompt_tokens: int,
        backend: str,
        start: float | None = None,
    ) -> None:
        self._decode = decode
        self._eos_ids = eos_ids
        self._stops = tuple(s for s in stops if s)
        self._longest_stop = max((len(s) for s in self._stops), default=0)
        self.prompt_tokens = prompt_tokens
        self.backend = backend
        self.start = time.perf_counter() if start is None else start
        self.first_token_at: float | None = None
        self.generated: list[int] = []
        self.produced = 0
        """Tokens received, EOS included (the completion token count)."""
        self.text = ""
        self.finish_reason = "length"
        self.stopped_by: str | None = None
        self.finished = False
        self._emitted = 0
        self._prefix = 0
        """Start of the decode window: the first token of the group already turned into text."""
        self._read = 0
        """End of the tokens already turned into text."""
        self._prefix_text = ""
        """decode(generated[_prefix:_read]); never empty once text exists, so a window never starts
        at a token that shows nothing alone (its neighbour would lose a leading space)."""

    def feed(self, token: int) -> str:
        """Take one token; return the newly safe text."""
        if self.finished:
            return ""
        self.first_token_at = self.first_token_at or time.perf_counter()
        self.produced += 1
        if token in self._eos_ids:
            self.finish_reason, self.finished = "stop", True
            return ""
        self.generated.append(token)
        before = len(self.text)
        self.text += self._advance(final=False)
        if self._stops and len(self.text) > before and self._cut_at_stop(before):
            return ""
        safe_end = len(self.text) - held_back(self.text, self._stops)
        if safe_end <= self._emitted:
            return ""
        delta, self._emitted = self.text[self._emitted : safe_end], safe_end
        return delta

    def events(self, tokens: Iterable[int]) -> Iterator[StreamEvent]:
        """An event per newly safe piece of text of `tokens`; stops taking tokens once finished."""
        for token in tokens:
            delta = self.feed(token)
            if delta:
                yield StreamEvent(delta)
            if self.finished:
                return

    def _advance(self, *, final: bool) -> str:
        """The text the window's new tokens add ("" while they end inside a character)."""
        window_text = self._decode(self.generated[self._prefix :])
        if window_text.endswith("\ufffd") and not final:
            return ""
        added = window_text[len(self._prefix_text) :]
        group_text = self._decode(self.generated[self._read :]) if added else ""
        if group_text:  # the new group starts the next window
            self._prefix, self._prefix_text = self._read, group_text
        else:  # it shows nothing alone (skipped special tokens): the window keeps its start
            self._prefix_text = window_text
        self._read = len(self.generated)
        return added

    def _cut_at_stop(self, before: int) -> bool:
        """Cut the text at the earliest stop string that the new text completes."""
        begin = max(0, before - self._longest_stop + 1)
        found = [(at, s) for s in self._stops if (at := self.text.find(s, begin)) >= 0]
        if not found:
            return False
        cut, self.stopped_by = min(found)
        self.text, self.finish_reason, self.finished = self.text[:cut], "stop", True
        return True

    def final(self) -> StreamEvent:
        """The last event: the text not yet emitted and the result."""
        if self.stopped_by is None and self._read < len(self.generated):
            self.text += self._advance(final=True)  # a character cut off by the end
        end = time.perf_counter()
        result = GenerationResult(
            text=self.text,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.produced,
            finish_reason=self.finish_reason,
            ttft_s=(self.first_token_at or end) - self.start,
            total_s=end - self.start,
            backend=self.backend,
            token_ids=self.generated,
            stopped_by=self.stopped_by,
        )
        return StreamEvent(self.text[self._emitted :], result)
