"""Fine-tuning record formats, recognised by their keys, and their validation.

- ``summarization``: ``{id, dialogue, summary, topic}`` (DialogSum style)
- ``instruction``:   ``{instruction, input, output}`` (Alpaca style; ``input`` may be empty)
- ``chat``:          ``{messages: [{role, content}, ...]}``, optionally with OpenAI ``tools`` and
  function-calling turns (assistant ``tool_calls``, ``role: "tool"`` results)
- ``text``:          ``{text}`` (continued pre-training: every token is a target)
- ``preference``:    ``{prompt, chosen, rejected}`` (for DPO / reward models)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lmfoundry.errors import InvalidInputError

CHAT_ROLES = {"system", "user", "assistant", "tool"}


# Format name -> (identifying key, required string fields). Checked in this order.
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "preference": ("chosen", ("prompt", "chosen", "rejected")),
    "chat": ("messages", ("messages",)),
    "summarization": ("dialogue", ("dialogue", "summary")),
    "instruction": ("instruction", ("instruction", "output")),
    "text": ("text", ("text",)),
}


def detect_format(record: Mapping[str, Any]) -> str:
    """Name the format of `record` from its keys (see FORMATS); raise if none matches."""
    if not isinstance(record, Mapping):
        raise InvalidInputError(f"a record must be a JSON object, got {type(record).__name__}")
    for name, (key, _) in FORMATS.items():
        if key in record or (name == "preference" and "rejected" in record):
            return name
    expected = "; ".join(f"{n}: {', '.join(f)}" for n, (_, f) in FORMATS.items())
    raise InvalidInputError(f"record keys {sorted(record)} match no format (expected {expected})")


def validate_record(record: Mapping[str, Any], fmt: str | None = None) -> str:
    """Check the fields `fmt` needs (detected when None) and return the format name."""
    fmt = fmt or detect_format(record)
    for field in FORMATS[fmt][1]:
        if field not in record or record[field] is None:
            raise InvalidInputError(f"{fmt} record is missing {field!r}")
    if fmt == "chat":
        _check_messages(record["messages"], "messages")
        _check_tools(record)
    elif fmt == "preference":
        for field in ("prompt", "chosen", "rejected"):
            value = record[field]
            if isinstance(value, list):
                _check_messages(value, field)
            elif not isinstance(value, str):
                raise InvalidInputError(f"{field!r} must be a string or a list of messages")
    else:
        for field in FORMATS[fmt][1] + (("input",) if fmt == "instruction" else ()):
            value = record.get(field)
            if value is not None and not isinstance(value, str):
                raise InvalidInputError(f"{field!r} must be a string, got {type(value).__name__}")
        if not str(record[FORMATS[fmt][0]]).strip():
            raise InvalidInputError(f"{FORMATS[fmt][0]!r} is empty")
    return fmt


def _check_messages(messages: Any, field: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError(f"{field!r} must be a non-empty list of {{role, content}} objects")
    for i, message in enumerate(messages):
        calls = message.get("tool_calls") if isinstance(message, Mapping) else None
        content_ok = isinstance(message, Mapping) and (
            isinstance(message.get("content"), str) or (calls and message.get("content") is None)
        )
        if not content_ok:
            raise InvalidInputError(f"{field}[{i}] must be an object with a string 'content'")
        if calls is not None:
            _check_calls(calls, f"{field}[{i}].tool_calls")
        if message.get("role") not in CHAT_ROLES:
            raise InvalidInputError(
                f"{field}[{i}] has role {message.get('role')!r} (expected one of {sorted(CHAT_ROLES)})"
            )


def _check_calls(calls: Any, field: str) -> None:
    """Assistant function calls in the OpenAI shape, arguments a JSON object (string or dict)."""
    import json

    if not isinstance(calls, list) or not calls:
        raise InvalidInputError(f"{field} must be a non-empty list of calls")
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise InvalidInputError(f"{field}[{j}] must be {{type: function, function: {{name, arguments}}}}")
        arguments = function.get("arguments", {})
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{field}[{j}].function.arguments is not valid JSON: {exc}") from exc
        if not isinstance(parsed, Mapping):
            raise InvalidInputError(f"{field}[{j}].function.arguments must be a JSON object")


def _check_tools(record: Mapping[str, Any]) -> None:
    tools = record.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list) or not all(
        isinstance(t, Mapping) and isinstance(t.get("function"), Mapping) and t["function"].get("name")
        for t in tools
    ):
        raise InvalidInputError("'tools' must be a list of {type: function, function: {name, parameters}}")
