"""`calculator`: arithmetic the model should not do in its head, evaluated without eval().

The expression is parsed with `ast` and walked node by node; only numbers, the arithmetic
operators, unary signs and a few math functions are allowed, so `__import__('os')`, attribute
access, names and comprehensions are refused before anything runs. Exponents and results are
capped so `9**9**9` cannot hang the process.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from lmfoundry.agents.tools.base import Tool, ToolError, object_schema, require_str

MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e300
MAX_EXPRESSION_CHARS = 500

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "exp": math.exp,
    "floor": math.floor,
    "ceil": math.ceil,
}
CONSTANTS = {"pi": math.pi, "e": math.e}


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression, or a ToolError saying what is not allowed."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise ToolError(f"not a valid expression: {err.msg}") from None
    return _check_size(_eval(tree.body))


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _binary(node.op, _eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Call):
        return _call(node)
    raise ToolError(f"{_describe(node)} is not allowed (numbers, + - * / // % **, parentheses and "
                    f"{', '.join(FUNCTIONS)} only)")  # fmt: skip


def _binary(op: ast.operator, left: Any, right: Any) -> Any:
    if isinstance(op, ast.Pow):
        _check_power(left, right)
    try:
        return _check_size(_BINARY[type(op)](left, right))
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except (OverflowError, ValueError) as err:
        raise ToolError(f"arithmetic error: {err}") from None


def _check_power(base: Any, exponent: Any) -> None:
    """Refuse a power whose result would be huge before computing it (big-int powers take time)."""
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponent {exponent} is too large (limit {MAX_EXPONENT})")
    if abs(base) > 1 and exponent > 0 and exponent * math.log10(abs(base)) > math.log10(MAX_MAGNITUDE):
        raise ToolError("the result is too large")


def _call(node: ast.Call) -> Any:
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        raise ToolError(
            f"{_describe(node.func)} is not an allowed function (allowed: {', '.join(FUNCTIONS)})"
        )
    if node.keywords:
        raise ToolError("keyword arguments are not allowed")
    args = [_eval(arg) for arg in node.args]
    try:
        return FUNCTIONS[node.func.id](*args)
    except (TypeError, ValueError, OverflowError) as err:
        raise ToolError(f"{node.func.id}: {err}") from None


def _check_size(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise ToolError("the result is too large")
    return value


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}"
    if isinstance(node, ast.Attribute):
        return f"attribute access ('.{node.attr}')"
    if isinstance(node, ast.Constant):
        return f"the constant {node.value!r}"
    return f"a {type(node).__name__} expression"


def format_number(value: int | float) -> str:
    """Integers as they are; floats without float noise (12 significant digits)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value) if isinstance(value, int) else f"{value:.12g}"


def calculator() -> Tool:
    """The calculator tool."""

    def run(expression: Any) -> str:
        return format_number(evaluate(require_str(expression, "expression")))

    return Tool(
        name="calculator",
        description="Evaluate an arithmetic expression exactly, e.g. '(17 + 5) * 3 / 4' or 'sqrt(2) ** 3'. "
        f"Supports + - * / // % **, parentheses and {', '.join(FUNCTIONS)}.",
        parameters=object_schema({"expression": {"type": "string", "description": "the expression"}}),
        fn=run,
    )
