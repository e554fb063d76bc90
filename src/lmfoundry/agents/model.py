"""The model the agent loop talks to: OpenAI-format messages and tools in, one assistant message out.

One protocol, two ways to meet it: a model loaded in this process (`LocalToolModel`, through the
engine's tool-calling chat) and any OpenAI-compatible server (`OpenAIToolModel`: `lmf serve`,
vLLM, a hosted API). The loop only sees plain dicts, so tests can replay scripted messages.
"""

from __future__ import annotations

from typing import Any, Protocol

from lmfoundry.plugins import require


class ToolChatModel(Protocol):
    def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], tool_choice: str | dict[str, Any]
    ) -> dict[str, Any]:
        """One OpenAI-format assistant message: {"role": "assistant", "content": str | None,
        "tool_calls": [{"id", "type": "function", "function": {"name", "arguments": "<json>"}}] or absent},
        plus "finish_reason" when known ("length" = the reply was cut at the token limit)."""
        ...


class LocalToolModel:
    """A loaded model (`lmfoundry.load(name)`) answering with greedy decoding, so runs repeat."""

    def __init__(self, loaded: Any, *, max_new_tokens: int = 512) -> None:
        self.loaded = loaded
        self.max_new_tokens = max_new_tokens

    def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], tool_choice: str | dict[str, Any]
    ) -> dict[str, Any]:
        reply = self.loaded.chat(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            temperature=0.0,
            max_new_tokens=self.max_new_tokens,
        )
        return {**reply.message, "finish_reason": reply.finish_reason}


class OpenAIToolModel:
    """A model behind an OpenAI-compatible `/v1/chat/completions` endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        max_tokens: int = 512,
        timeout_s: float = 120.0,
    ) -> None:
        openai = require("openai", extra="agents")
        self.model = model
        self.max_tokens = max_tokens
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s)

    def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], tool_choice: str | dict[str, Any]
    ) -> dict[str, Any]:
        extra = {"tools": tools, "tool_choice": tool_choice} if tools else {}
        response = self.client.chat.completions.create(
            model=self.model, messages=messages, temperature=0.0, max_tokens=self.max_tokens, **extra
        )
        message: dict[str, Any] = response.choices[0].message.model_dump(exclude_none=True)
        message.setdefault("content", None)
        message["finish_reason"] = response.choices[0].finish_reason
        return message
