"""What a tool is: a name, a description and a JSON schema the model reads, and a Python callable.

A tool reports a problem the model can act on (a bad expression, a refused query, a host that is
not allowed) by raising `ToolError`; the loop feeds its message back to the model as
`error: ...`, so the model can correct itself instead of the run ending.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class ToolError(Exception):
    """A failure the model should read and react to (the loop sends it back as `error: ...`)."""


class ToolArgumentError(ToolError):
    """The call itself was malformed (missing, unknown or ill-typed arguments): an invalid call."""


TIMEOUT_ARG = "timeout_s"
"""The keyword the loop fills with the seconds left when a tool says it takes a timeout."""


@dataclass(frozen=True)
class Tool:
    """A callable the model may call by name, with keyword arguments described by `parameters`."""

    name: str
    description: str
    parameters: dict[str, Any]
    """JSON schema of the keyword arguments (an object schema)."""
    fn: Callable[..., str]
    takes_timeout: bool = False
    """True when `fn` accepts `timeout_s=`: the loop then passes the seconds the run has left."""
    close: Callable[[], None] | None = field(default=None, compare=False)
    """Releases what the tool holds (an MCP server process); None when there is nothing to release."""

    def spec(self) -> dict[str, Any]:
        """The OpenAI `tools` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def invoke(self, arguments: Mapping[str, Any], timeout_s: float | None = None) -> str:
        """Check the arguments against the schema's names, then call the tool."""
        check_argument_names(self.parameters, arguments)
        kwargs = dict(arguments)
        if self.takes_timeout:
            kwargs[TIMEOUT_ARG] = timeout_s
        return str(self.fn(**kwargs))


def check_argument_names(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> None:
    """Raise ToolArgumentError for a missing required or an unknown argument. Types are left to the
    tool (python_tool validates them fully), so this only catches calls that cannot be made at all."""
    properties = schema.get("properties", {})
    missing = [name for name in schema.get("required", []) if name not in arguments]
    if missing:
        raise ToolArgumentError(f"missing required argument(s): {', '.join(missing)}")
    if schema.get("additionalProperties", False) is False:
        unknown = [name for name in arguments if name not in properties]
        if unknown:
            expected = ", ".join(properties) or "none"
            raise ToolArgumentError(f"unknown argument(s): {', '.join(unknown)} (expected: {expected})")


def object_schema(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """A closed JSON object schema: these properties, these required, nothing else."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def require_str(value: Any, name: str) -> str:
    """The argument as a non-empty string, or a ToolArgumentError naming it."""
    if not isinstance(value, str) or not value.strip():
        raise ToolArgumentError(f"argument {name!r} must be a non-empty string, got {value!r}")
    return value


def close_tools(tools: Iterable[Tool]) -> None:
    """Release what the tools hold, each resource once (MCP tools of one server share theirs)."""
    seen: set[int] = set()
    for tool in tools:
        owner = id(getattr(tool.close, "__self__", tool.close))
        if tool.close is not None and owner not in seen:
            seen.add(owner)
            tool.close()
