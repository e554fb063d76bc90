"""A chat request's conversation, tools and output constraint, and a choice's reply in OpenAI form.

Kept apart from the handlers: what a chat request *means* (messages with tool turns, which
constraint its output follows) is independent of how it is queued and streamed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.generate.constraints import response_constraint
from lmfoundry.generate.tools import ToolSpec, call_constraint, parse_tool_calls, tool_spec
from lmfoundry.serve.errors import bad_request
from lmfoundry.types import Constraint, Message

if TYPE_CHECKING:
    from lmfoundry.serve.schema import ChatCompletionRequest


def chat_messages(req: ChatCompletionRequest) -> list[Message]:
    messages = []
    for m in req.messages:
        role = "system" if m.role == "developer" else m.role
        calls = tuple(m.tool_calls or ())
        messages.append(Message(role, m.text(), tool_calls=calls, tool_call_id=m.tool_call_id, name=m.name))  # type: ignore[arg-type]
    return messages


def chat_constraint(req: ChatCompletionRequest) -> tuple[ToolSpec | None, Constraint | None]:
    """The request's tools and the constraint its output must follow (400 naming the bad field)."""
    try:
        spec = tool_spec(req.tools, req.tool_choice, req.parallel_tool_calls)
    except InvalidInputError as exc:
        raise bad_request(str(exc), "tool_choice" if "tool_choice" in str(exc) else "tools") from exc
    wants_json = req.response_format is not None and req.response_format.get("type") != "text"
    if spec is not None and wants_json:
        raise bad_request("give either tools or a JSON response_format, not both", "response_format")
    if spec is not None:
        return spec, call_constraint(spec)
    try:
        return None, response_constraint(req.response_format)
    except InvalidInputError as exc:
        raise bad_request(str(exc), "response_format") from exc


def chat_reply(text: str, finish_reason: str, spec: ToolSpec | None) -> tuple[str | dict[str, Any], str]:
    """A choice's message (with tool_calls when it called tools) and finish reason."""
    if spec is None:
        return text, finish_reason
    content, calls = parse_tool_calls(text)
    if not calls:
        return {"role": "assistant", "content": content}, finish_reason
    finish = "tool_calls" if finish_reason == "stop" else finish_reason
    return {"role": "assistant", "content": content, "tool_calls": calls}, finish
