from __future__ import annotations

from typing import Literal

import pytest

from lmfoundry.agents.tools.base import ToolArgumentError
from lmfoundry.agents.tools.python_fn import python_tool
from lmfoundry.errors import InvalidInputError


def convert(amount: float, unit: Literal["km", "mi"], digits: int = 2) -> dict[str, float]:
    """Convert a distance between kilometres and miles."""
    value = amount * 0.621371 if unit == "km" else amount / 0.621371
    return {"value": round(value, digits)}


def test_schema_from_signature_and_docstring() -> None:
    tool = python_tool(convert)
    assert tool.name == "convert"
    assert tool.description == "Convert a distance between kilometres and miles."
    params = tool.parameters
    assert params["type"] == "object" and params["additionalProperties"] is False
    assert params["required"] == ["amount", "unit"]
    assert params["properties"]["amount"]["type"] == "number"
    assert params["properties"]["unit"]["enum"] == ["km", "mi"]
    assert params["properties"]["digits"]["default"] == 2


def test_call_validates_and_converts() -> None:
    tool = python_tool(convert)
    assert tool.invoke({"amount": "10", "unit": "km"}) == '{"value": 6.21}'


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"amount": "ten", "unit": "km"}, "amount: Input should be a valid number"),
        ({"amount": 1, "unit": "ft"}, "unit: Input should be 'km' or 'mi'"),
        ({"unit": "km"}, "missing required argument"),
        ({"amount": 1, "unit": "km", "extra": 1}, "unknown argument"),
    ],
)
def test_bad_arguments_are_tool_errors(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ToolArgumentError, match=message):
        python_tool(convert).invoke(arguments)


def test_functions_that_cannot_be_tools() -> None:
    def no_doc(a: int) -> int:
        return a

    def no_hint(a):  # type: ignore[no-untyped-def]
        """Doc."""
        return a

    with pytest.raises(InvalidInputError, match="docstring"):
        python_tool(no_doc)
    with pytest.raises(InvalidInputError, match="type hint"):
        python_tool(no_hint)
