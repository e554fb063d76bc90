"""OpenAI-style tool calling for any chat model: prompt rendering, a constraint, and parsing.

The wire format the model writes is the one most open chat models are trained on (Hermes, Qwen,
SmolLM3): each call is `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`. Models whose
chat template renders `tools` itself get them through it; for the others (SmolLM2 among them) the
tools and this format are described in the system message (`FALLBACK_INSTRUCTIONS`), assistant
calls are written back in the same format and tool results go in as user turns wrapped in
`<tool_response>`. Either way the output is constrained by a grammar, so every call names a real
function and its arguments validate against that function's JSON schema.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.generate.constraints import JSON_OPTIONS
from lmfoundry.types import Constraint, Message

OPEN, CLOSE = "<tool_call>", "</tool_call>"
MAX_PARALLEL_CALLS = 4
"""Calls one turn may make in parallel: small models otherwise repeat the same call until the limit."""
FALLBACK_INSTRUCTIONS = (
    "You can call functions. The available functions, as JSON schemas:\n{tools}\n\n"
    "To call a function, reply with one line per call of the form\n"
    '<tool_call>{{"name": "<function name>", "arguments": {{<arguments as JSON>}}}}</tool_call>\n'
    "Function results come back wrapped in <tool_response></tool_response>. "
    "When you have what you need, answer the user in plain text."
)


@dataclass(frozen=True)
class ToolSpec:
    """The tools of one request and how the model may use them."""

    functions: tuple[dict[str, Any], ...]
    """Each {"name", "description", "parameters"} (the OpenAI `function` object)."""
    choice: str = "auto"
    """"auto", "none", "required", or the name of the one function to call."""
    parallel: bool = True

    @property
    def names(self) -> list[str]:
        return [f["name"] for f in self.functions]


def tool_spec(
    tools: list[dict[str, Any]] | None, tool_choice: str | dict[str, Any] | None, parallel: bool | None
) -> ToolSpec | None:
    """Validate OpenAI `tools` / `tool_choice`; None when no tool may be called."""
    functions = tuple(_function(t, i) for i, t in enumerate(tools or []))
    choice = _choice(tool_choice, [f["name"] for f in functions])
    if not functions or choice == "none":
        return None
    if len({f["name"] for f in functions}) != len(functions):
        raise InvalidInputError("tools: function names must be unique")
    return ToolSpec(functions, choice, parallel if parallel is not None else True)


def _function(tool: dict[str, Any], index: int) -> dict[str, Any]:
    if (
        not isinstance(tool, dict)
        or tool.get("type") != "function"
        or not isinstance(tool.get("function"), dict)
    ):
        raise InvalidInputError(f'tools[{index}] must be {{"type": "function", "function": {{...}}}}')
    function = tool["function"]
    name = function.get("name")
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise InvalidInputError(f"tools[{index}].function.name must be letters, digits, _ or -")
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise InvalidInputError(f"tools[{index}].function.parameters must be a JSON schema object")
    return {"name": name, "description": str(function.get("description") or ""), "parameters": parameters}


def _choice(tool_choice: str | dict[str, Any] | None, names: list[str]) -> str:
    if tool_choice is None:
        return "auto"
    if isinstance(tool_choice, str):
        if tool_choice not in ("auto", "none", "required"):
            raise InvalidInputError(
                f"tool_choice must be auto, none, required or a function, not {tool_choice!r}"
            )
        if tool_choice == "required" and not names:
            raise InvalidInputError("tool_choice is 'required' but no tools were given")
        return tool_choice
    name = (tool_choice.get("function") or {}).get("name") if isinstance(tool_choice, dict) else None
    if tool_choice.get("type") != "function" or not name:
        raise InvalidInputError('tool_choice must look like {"type": "function", "function": {"name": ...}}')
    if name not in names:
        raise InvalidInputError(
            f"tool_choice names {name!r}, which is not among the tools ({', '.join(names)})"
        )
    return str(name)


def call_constraint(spec: ToolSpec) -> Constraint:
    """A grammar: tool calls whose arguments match their schemas, or (for "auto") plain text."""
    functions = [f for f in spec.functions if spec.choice in ("auto", "required") or f["name"] == spec.choice]
    call_schema = {
        "oneOf": [
            {
                "type": "object",
                "properties": {"name": {"const": f["name"]}, "arguments": f["parameters"]},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for f in functions
        ],
        "x-guidance": JSON_OPTIONS,
    }
    many = spec.parallel and spec.choice in ("auto", "required")
    calls = f'call ("\\n" call){{0,{MAX_PARALLEL_CALLS - 1}}}' if many else "call"
    rules = [f"calls: {calls}", f'call: "{OPEN}" %json {json.dumps(call_schema)} "{CLOSE}"']
    start = "start: calls | TEXT" if spec.choice == "auto" else "start: calls"
    if spec.choice == "auto":
        rules.append(r"TEXT: /[^<\s][\s\S]*/")  # an answer in words (not starting like a call)
    return Constraint("grammar", "\n".join([start, *rules]), end_on_repeat=CLOSE)


def fallback_messages(messages: list[Message], spec: ToolSpec | None) -> list[Message]:
    """The conversation for a chat template that knows nothing of tools (see module docstring)."""
    out: list[Message] = []
    for message in messages:
        if message.role == "tool":
            out.append(Message("user", f"<tool_response>\n{message.content}\n</tool_response>"))
        elif message.role == "assistant" and message.tool_calls:
            calls = "\n".join(_call_text(c) for c in message.tool_calls)
            out.append(Message("assistant", "\n".join(t for t in (message.content, calls) if t)))
        else:
            out.append(Message(message.role, message.content))
    if spec is None:
        return out
    listing = "\n".join(json.dumps(f) for f in spec.functions)
    instructions = FALLBACK_INSTRUCTIONS.format(tools=listing)
    if out and out[0].role == "system":
        return [Message("system", f"{out[0].content}\n\n{instructions}"), *out[1:]]
    return [Message("system", instructions), *out]


def _call_text(call: dict[str, Any]) -> str:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"an assistant tool call's arguments are not valid JSON: {exc}") from exc
    return f"{OPEN}{json.dumps({'name': function.get('name'), 'arguments': parsed})}{CLOSE}"


def parse_tool_calls(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """Split model output into (content, OpenAI tool_calls); text that is not a call stays content."""
    calls: list[dict[str, Any]] = []
    rest: list[str] = []
    position = 0
    while (start := text.find(OPEN, position)) != -1:
        end = text.find(CLOSE, start)
        if end == -1:
            break
        body = text[start + len(OPEN) : end]
        rest.append(text[position:start])
        position = end + len(CLOSE)
        try:
            payload = json.loads(body)
            name, arguments = payload["name"], payload.get("arguments", {})
        except (json.JSONDecodeError, KeyError, TypeError):
            rest.append(text[start:position])  # not a well-formed call: leave it visible
            continue
        if any(_same_call(c, name, arguments) for c in calls):
            continue  # the same call twice in one turn answers nothing new
        calls.append(new_call(str(name), arguments))
    rest.append(text[position:])
    content = "".join(rest).strip()
    return (content or None), calls


def _same_call(call: dict[str, Any], name: Any, arguments: Any) -> bool:
    function = call["function"]
    return bool(function["name"] == name and json.loads(function["arguments"]) == arguments)


def new_call(name: str, arguments: Any) -> dict[str, Any]:
    """One OpenAI tool call with a fresh id; arguments are serialised as a JSON string."""
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def message_from_dict(data: dict[str, Any]) -> Message:
    """An OpenAI-format message dict (as agents and clients build them) as a `Message`."""
    content = data.get("content")
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    role = "system" if data.get("role") == "developer" else data.get("role")
    if role not in ("system", "user", "assistant", "tool"):
        raise InvalidInputError(f"unknown message role {data.get('role')!r}")
    return Message(
        role,  # type: ignore[arg-type]
        str(content or ""),
        tool_calls=tuple(data.get("tool_calls") or ()),
        tool_call_id=data.get("tool_call_id"),
        name=data.get("name"),
    )
