"""A ToolChatModel that replays fixed assistant messages and records what it was shown."""

from __future__ import annotations

import copy
import json
from typing import Any


def call(name: str, arguments: Any, call_id: str | None = None) -> dict[str, Any]:
    """One tool call; dict arguments are JSON-encoded, strings are sent as they are."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id or f"id-{name}", "type": "function", "function": {"name": name, "arguments": raw}}


def calls(*items: dict[str, Any], content: str | None = None) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "tool_calls": list(items)}


def answer(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


class ScriptedModel:
    def __init__(self, *replies: dict[str, Any]) -> None:
        self.replies = list(replies)
        self.seen: list[list[dict[str, Any]]] = []
        self.tools: list[list[dict[str, Any]]] = []
        self.choices: list[str | dict[str, Any]] = []

    def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], tool_choice: str | dict[str, Any]
    ) -> dict[str, Any]:
        self.seen.append(copy.deepcopy(messages))
        self.tools.append(tools)
        self.choices.append(tool_choice)
        return self.replies.pop(0) if self.replies else answer("out of script")
