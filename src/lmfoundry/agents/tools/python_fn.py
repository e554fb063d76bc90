"""`python_tool(fn)`: any type-hinted Python function as a tool.

The signature is the schema (the way litgpt's entry points are their config schema): pydantic
builds a model from the parameters, its JSON schema is what the model reads, and the same model
validates the model's arguments before the function runs, so a wrong type becomes an `error:`
the model can fix instead of an exception deep inside the function.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

import pydantic

from lmfoundry.agents.tools.base import Tool, ToolArgumentError
from lmfoundry.errors import InvalidInputError


def signature_model(fn: Callable[..., Any]) -> type[pydantic.BaseModel]:
    """A pydantic model with one field per parameter of `fn` (extra arguments forbidden)."""
    hints = typing.get_type_hints(fn)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise InvalidInputError(f"{fn.__name__}: parameter {name!r} must be a plain or keyword parameter")
        if name not in hints:
            raise InvalidInputError(f"{fn.__name__}: parameter {name!r} needs a type hint (it is the schema)")
        default = ... if param.default is param.empty else param.default
        fields[name] = (hints[name], default)
    config = pydantic.ConfigDict(extra="forbid")
    return pydantic.create_model(f"{fn.__name__}_arguments", __config__=config, **fields)


def _error_text(err: pydantic.ValidationError) -> str:
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "arguments"
        parts.append(f"{where}: {item['msg']}")
    return "invalid arguments: " + "; ".join(parts)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def python_tool(fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> Tool:
    """A Tool calling `fn`; schema from its signature, description from its docstring."""
    text = description or inspect.getdoc(fn)
    if not text:
        raise InvalidInputError(f"{fn.__name__}: give it a docstring (the model reads it to choose the tool)")
    model = signature_model(fn)
    schema = model.model_json_schema()
    schema.pop("title", None)

    def run(**arguments: Any) -> str:
        try:
            validated = model.model_validate(arguments)
        except pydantic.ValidationError as err:
            raise ToolArgumentError(_error_text(err)) from None
        return _as_text(fn(**{key: getattr(validated, key) for key in type(validated).model_fields}))

    return Tool(name=name or fn.__name__, description=text, parameters=schema, fn=run)
