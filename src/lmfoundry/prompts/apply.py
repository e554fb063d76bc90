"""A prompt template applied to one request: a single input (`lmf generate`, `/v1/completions`) or
the last user turn of a conversation (`lmf chat`, `/v1/chat/completions`).

Demonstrations come from the template itself here (a request has no train split to draw from);
`selection: similar` or `random` choose among them per input. A conversation keeps its history:
the template's system message (or the conversation's own, when the template has none) and its
demonstrations open it, the earlier turns follow, and the last user turn is laid out with the
template's instruction and input slot.
"""

from __future__ import annotations

from lmfoundry.errors import InvalidInputError
from lmfoundry.prompts.registry import PromptRef
from lmfoundry.prompts.render import Prompt
from lmfoundry.prompts.select import DemoSelector
from lmfoundry.types import Message


def render_input(ref: PromptRef, text: str, *, chat: bool) -> tuple[Prompt, tuple[str, ...]]:
    """(prompt, stop strings) for one input: messages when the model has a chat template, else text."""
    template = ref.template
    demos = DemoSelector(template).select(text, key=text)
    if chat:
        return template.messages(text, demos), tuple(template.stop)
    return template.text(text, demos), template.text_stop()


def render_conversation(ref: PromptRef, messages: list[Message]) -> list[Message]:
    """The conversation with the template applied (see the module docstring)."""
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    if not users:
        raise InvalidInputError(f"prompt template {ref.template.name!r} needs a user message to apply to")
    last = users[-1]
    template, text = ref.template, messages[last].content
    demos = DemoSelector(template).select(text, key=text)
    opening = template.messages(text, demos)[:-1]  # the template's system message and demonstrations
    systems = [] if template.system else [m for m in messages[:last] if m.role == "system"]
    history = [m for m in messages[:last] if m.role != "system"]
    return [*systems, *opening, *history, Message("user", template.user_text(text)), *messages[last + 1 :]]
