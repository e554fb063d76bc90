"""Turn one input into the prompt a model gets: the template's form for that model, its
demonstrations, trimmed to the context budget.

`chat=True` (the model has a chat template) renders messages, which the engine passes through the
model's own chat template; `chat=False` renders the plain-text form. When the prompt plus the
answer's room would not fit the context, demonstrations are dropped (least relevant first) until
it does; `Rendered.shots` says how many were kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lmfoundry.embed.sentence import Embedder
from lmfoundry.prompts.registry import PromptRef
from lmfoundry.prompts.select import DemoSelector
from lmfoundry.prompts.template import Demonstration
from lmfoundry.types import Message

Prompt = str | list[Message]
TokenCounter = Callable[[Prompt], int]


@dataclass(frozen=True)
class Rendered:
    prompt: Prompt
    shots: int
    """Demonstrations in the prompt (after trimming to the budget)."""
    prompt_tokens: int
    stop: tuple[str, ...]


class PromptRenderer:
    """Renders inputs with one template for one model (its chat ability, token counter and budget)."""

    def __init__(
        self,
        ref: PromptRef,
        *,
        chat: bool,
        count_tokens: TokenCounter,
        budget: int,
        pool: Sequence[Demonstration] = (),
        embedder: Embedder | None = None,
    ) -> None:
        self.ref, self.chat, self.count_tokens, self.budget = ref, chat, count_tokens, budget
        self.selector = DemoSelector(ref.template, pool, embedder)

    def render(self, text: str, key: str) -> Rendered:
        """The prompt for `text` (`key` = its example id), trimmed to the budget."""
        demos = self.selector.select(text, key)
        while True:
            prompt = self._form(text, demos)
            tokens = self.count_tokens(prompt)
            if tokens <= self.budget or not demos:
                return Rendered(prompt, len(demos), tokens, self.stop())
            demos = demos[1:]

    def _form(self, text: str, demos: list[Demonstration]) -> Prompt:
        template = self.ref.template
        return template.messages(text, demos) if self.chat else template.text(text, demos)

    def stop(self) -> tuple[str, ...]:
        template = self.ref.template
        return tuple(template.stop) if self.chat else template.text_stop()

    def describe(self) -> dict[str, Any]:
        """What results record: name, version, source, shots, selection, seed, and the form."""
        return {**self.ref.describe(), "form": "chat" if self.chat else "text"}
