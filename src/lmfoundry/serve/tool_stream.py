"""Streamed chat deltas for a request with tools: plain content, or `tool_calls` deltas.

With tools, the output grammar (generate/tools.py) makes a reply either words that do not start
with "<" or a run of `<tool_call>...</tool_call>` blocks, so the first visible character decides
which. Content streams as it comes; each call is sent when its closing tag arrives, as OpenAI
does: one delta opening the call (index, id, name, empty arguments), one with the arguments.
"""

from __future__ import annotations

from typing import Any

from lmfoundry.generate.tools import CLOSE, parse_tool_calls


class ToolDeltas:
    """One choice's state: feed text pieces, get chat `delta` dicts back."""

    def __init__(self) -> None:
        self.mode: str | None = None
        """None until the first visible character, then "content" or "calls"."""
        self.text = ""
        self.calls: list[dict[str, Any]] = []

    def feed(self, piece: str) -> list[dict[str, Any]]:
        self.text += piece
        if self.mode is None:
            visible = self.text.lstrip()
            if not visible:
                return []
            self.mode = "calls" if visible.startswith("<") else "content"
            piece = self.text
        if self.mode == "content":
            return [{"content": piece}] if piece else []
        return self._new_calls() if CLOSE in self.text else []

    def _new_calls(self) -> list[dict[str, Any]]:
        _, calls = parse_tool_calls(self.text)
        deltas: list[dict[str, Any]] = []
        for index in range(len(self.calls), len(calls)):
            call = calls[index]
            self.calls.append(call)
            function = call["function"]
            opening = {"index": index, "id": call["id"], "type": "function"}
            deltas.append(
                {"tool_calls": [{**opening, "function": {"name": function["name"], "arguments": ""}}]}
            )
            deltas.append(
                {"tool_calls": [{"index": index, "function": {"arguments": function["arguments"]}}]}
            )
        return deltas

    def finish(self, finish_reason: str) -> tuple[list[dict[str, Any]], str]:
        """Deltas still owed at the end (a call cut by the token limit is shown as content) and
        the finish reason to report."""
        if self.mode != "calls":
            return [], finish_reason
        content, _ = parse_tool_calls(self.text)
        deltas = [{"content": content}] if content else []
        return deltas, "tool_calls" if self.calls and finish_reason == "stop" else finish_reason

    def message(self) -> dict[str, Any]:
        """The assistant message these deltas add up to (what capture records)."""
        if self.mode != "calls":
            return {"role": "assistant", "content": self.text}
        content, _ = parse_tool_calls(self.text)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self.calls:
            message["tool_calls"] = self.calls
        return message
