"""A tool list from names and options: what `lmf agent run --tools ... --sql-db ...` asks for.

Tools that reach outside the process need their target named explicitly: `sql` a database file,
`rag_search` a store, `http_get` the allowed hosts. Naming the target turns the tool on, so
`--sql-db shop.db` alone is enough; asking for a tool without its target is an error.
"""

from __future__ import annotations

import importlib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from lmfoundry.agents.tools.base import Tool, close_tools
from lmfoundry.agents.tools.calculator import calculator
from lmfoundry.agents.tools.http_get import http_get
from lmfoundry.agents.tools.mcp_server import mcp_tools
from lmfoundry.agents.tools.python_fn import python_tool
from lmfoundry.agents.tools.rag_search import rag_search
from lmfoundry.agents.tools.sql import sql_tool
from lmfoundry.errors import InvalidInputError

BUILTIN_TOOLS = ("calculator", "sql", "rag_search", "http_get")


@dataclass
class ToolOptions:
    sql_db: str | None = None
    rag_store: str | None = None
    allow_hosts: list[str] = field(default_factory=list)
    mcp: list[str] = field(default_factory=list)
    """MCP server command lines, e.g. "python server.py --flag" (split like a shell would)."""
    python: list[str] = field(default_factory=list)
    """Python functions as "module:function"."""


def tool_names(names: Sequence[str] | None, options: ToolOptions) -> list[str]:
    """The built-ins to make: the ones named, else the calculator plus those whose target is given."""
    if names is None:
        implied = [
            ("sql", options.sql_db),
            ("rag_search", options.rag_store),
            ("http_get", options.allow_hosts),
        ]
        return ["calculator"] + [name for name, target in implied if target]
    unknown = [n for n in names if n not in BUILTIN_TOOLS]
    if unknown:
        raise InvalidInputError(
            f"unknown tool(s): {', '.join(unknown)} (built-in: {', '.join(BUILTIN_TOOLS)})"
        )
    return list(dict.fromkeys(names))


def _builtin(name: str, options: ToolOptions) -> Tool:
    if name == "calculator":
        return calculator()
    if name == "sql":
        if not options.sql_db:
            raise InvalidInputError("the sql tool needs a database: --sql-db PATH")
        return sql_tool(options.sql_db)
    if name == "rag_search":
        if not options.rag_store:
            raise InvalidInputError("the rag_search tool needs a store: --rag-store NAME")
        return rag_search(options.rag_store)
    return http_get(options.allow_hosts)  # refuses an empty allow-list itself


def import_function(spec: str) -> Tool:
    """`module:function` imported and wrapped with `python_tool`."""
    module, _, attribute = spec.partition(":")
    if not module or not attribute:
        raise InvalidInputError(f"a Python tool is given as module:function, got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as err:
        raise InvalidInputError(f"cannot import {spec}: {err}") from err
    return python_tool(fn)


def build_tools(names: Sequence[str] | None, options: ToolOptions) -> list[Tool]:
    """Every tool asked for; if one cannot be made, the ones already made are closed."""
    tools: list[Tool] = []
    try:
        tools += [_builtin(name, options) for name in tool_names(names, options)]
        tools += [import_function(spec) for spec in options.python]
        for command in options.mcp:
            tools += mcp_tools(shlex.split(command))
    except BaseException:
        close_tools(tools)
        raise
    return tools
