"""OpenAI tool definitions shared by the tool-calling tests: bounded arguments, so even a random
tiny model finishes a call within a few hundred tokens."""

from __future__ import annotations

from typing import Any


def function_tool(name: str, properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """A `{"type": "function", ...}` tool whose every property is required and no other allowed."""
    parameters = {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": False,
    }
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


SMALL_INT = {"type": "integer", "minimum": 0, "maximum": 99}
ADD = function_tool("add", {"a": SMALL_INT, "b": SMALL_INT}, "Add two integers")
WEATHER = function_tool(
    "get_weather",
    {"city": {"enum": ["Paris", "Oslo"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "Weather in a city",
)
