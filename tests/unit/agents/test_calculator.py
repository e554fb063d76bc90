from __future__ import annotations

import time

import pytest

from lmfoundry.agents.tools.base import ToolError
from lmfoundry.agents.tools.calculator import calculator, evaluate


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("2 ** 10", 1024),
        ("10 / 4", 2.5),
        ("sqrt(16) + abs(-2)", 6.0),
        ("max(3, 9, 4) - min(5, 2)", 7),
        ("round(2.567, 2)", 2.57),
        ("-(3 - 5)", 2),
    ],
)
def test_values(expression: str, value: float) -> None:
    assert evaluate(expression) == pytest.approx(value)


def test_tool_formats_numbers() -> None:
    tool = calculator()
    assert tool.invoke({"expression": "6431 * 789 + 55225"}) == "5129284"
    assert tool.invoke({"expression": "1 / 3"}) == "0.333333333333"
    assert tool.invoke({"expression": "4 / 2"}) == "2"
    assert tool.spec()["function"]["parameters"]["required"] == ["expression"]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero"),
        ("5 // 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("__import__('os')", "not an allowed function"),
        ("(1).__class__", "attribute access"),
        ("os.system('true')", "attribute access"),
        ("x + 1", "the name 'x'"),
        ("[1, 2]", "List"),
        ("'a' * 3", "the constant 'a'"),
        ("2 ** 100000", "exponent"),
        ("9 ** 9 ** 9", "exponent"),
        ("10 ** 999", "too large"),
        ("1 +", "not a valid expression"),
        ("sqrt(-1)", "sqrt"),
    ],
)
def test_refused_and_failing_expressions(expression: str, message: str) -> None:
    start = time.monotonic()
    with pytest.raises(ToolError, match=message):
        evaluate(expression)
    assert time.monotonic() - start < 1.0


def test_missing_and_unknown_arguments() -> None:
    tool = calculator()
    with pytest.raises(ToolError, match="missing required argument"):
        tool.invoke({})
    with pytest.raises(ToolError, match="unknown argument"):
        tool.invoke({"expression": "1", "mode": "fast"})
