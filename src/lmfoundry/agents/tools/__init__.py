"""Built-in agent tools and the `Tool` they all are: calculator, read-only SQL, HTTP GET (allow-list),
Python functions, RAG search and MCP servers."""

from __future__ import annotations

from lmfoundry.agents.tools.base import Tool, ToolArgumentError, ToolError, close_tools
from lmfoundry.agents.tools.calculator import calculator
from lmfoundry.agents.tools.http_get import http_get
from lmfoundry.agents.tools.mcp_server import McpConnection, mcp_tools
from lmfoundry.agents.tools.python_fn import python_tool
from lmfoundry.agents.tools.rag_search import rag_search
from lmfoundry.agents.tools.sql import sql_tool

__all__ = [
    "McpConnection",
    "Tool",
    "ToolArgumentError",
    "ToolError",
    "calculator",
    "close_tools",
    "http_get",
    "mcp_tools",
    "python_tool",
    "rag_search",
    "sql_tool",
]
