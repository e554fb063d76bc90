"""A template applied to one request or a conversation (generate, chat, the server)."""

from __future__ import annotations

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.prompts.apply import render_conversation, render_input
from lmfoundry.prompts.registry import PromptRef
from lmfoundry.prompts.template import parse_prompt
from lmfoundry.types import Message


def _ref(**data: object) -> PromptRef:
    return PromptRef(
        parse_prompt({"name": "t", "instruction": "Translate to French.", **data}), "builtin", "builtin"
    )


def test_one_input_in_chat_and_text_form() -> None:
    ref = _ref(shots=1, demonstrations=[{"input": "cat", "output": "chat"}], stop=["\n\n"])
    prompt, stop = render_input(ref, "dog", chat=True)
    assert prompt == [Message("user", "Translate to French.\n\ncat"), Message("assistant", "chat"),
                      Message("user", "Translate to French.\n\ndog")]  # fmt: skip
    assert stop == ("\n\n",)
    text, text_stop = render_input(ref, "dog", chat=False)
    assert isinstance(text, str) and text.endswith("Input:\ndog\nOutput:") and text_stop[0] == "\nInput:"


def test_a_conversation_keeps_its_history_and_lays_out_the_last_user_turn() -> None:
    history = [
        Message("system", "Be kind."),
        Message("user", "hi"),
        Message("assistant", "hello"),
        Message("user", "dog"),
    ]
    out = render_conversation(_ref(), history)
    assert out == [Message("system", "Be kind."), Message("user", "hi"), Message("assistant", "hello"),
                   Message("user", "Translate to French.\n\ndog")]  # fmt: skip
    replaced = render_conversation(_ref(system="Only French."), history)
    assert replaced[0] == Message("system", "Only French.") and Message("system", "Be kind.") not in replaced
    with pytest.raises(InvalidInputError, match="needs a user message"):
        render_conversation(_ref(), [Message("system", "x")])
