"""The backend protocol: what the engine needs from an inference library, in token ids.

Backends know tokenizers and forward passes, not HTTP, stop strings or timing (the engine does
those once for all backends).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from lmfoundry.types import Constraint, Message, SamplingParams

if TYPE_CHECKING:
    from lmfoundry.generate.constraints import TokenConstraint


class Backend(Protocol):
    name: str
    context_length: int
    eos_ids: frozenset[int]
    tokenizer: Any
    """The transformers tokenizer, or None for backends with their own."""

    def encode(self, text: str) -> list[int]:
        """Token ids of raw text, with the BOS token when the model expects one."""
        ...

    def decode(self, ids: list[int]) -> str: ...

    def chat_ids(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> list[int]:
        """Token ids of a conversation rendered with the chat template, ending in the assistant cue
        (`tools` are passed to templates that render them: see `supports_tools`)."""
        ...

    def has_chat_template(self) -> bool: ...

    def supports_tools(self) -> bool:
        """True when the chat template renders a `tools` list itself."""
        ...

    def constrain(self, constraint: Constraint) -> TokenConstraint:
        """A fresh grammar state for one constrained generation (see generate/constraints)."""
        ...

    def token_stream(self, prompt_ids: list[int], params: SamplingParams) -> Iterator[int]:
        """Generate up to `params.max_new_tokens` ids, stopping after an EOS id; closable early."""
        ...
