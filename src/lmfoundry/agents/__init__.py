"""Tool-using agents: a loop that lets a model call tools (calculator, read-only SQL, RAG search,
HTTP GET on allowed hosts, Python functions, MCP servers) until it answers, with every step
traced; and a bundled tool-use task that scores how well a model does it."""

from __future__ import annotations

from lmfoundry.agents.evaluate import AgentScore, evaluate_agent
from lmfoundry.agents.loop import AgentResult, Step, ToolCallRecord, run_agent
from lmfoundry.agents.model import LocalToolModel, OpenAIToolModel, ToolChatModel
from lmfoundry.agents.tasks import ToolTask, check, tool_use_tasks
from lmfoundry.agents.toolbox import ToolOptions, build_tools
from lmfoundry.agents.tools import (
    Tool,
    ToolArgumentError,
    ToolError,
    calculator,
    close_tools,
    http_get,
    mcp_tools,
    python_tool,
    rag_search,
    sql_tool,
)

__all__ = [
    "AgentResult",
    "AgentScore",
    "LocalToolModel",
    "OpenAIToolModel",
    "Step",
    "Tool",
    "ToolArgumentError",
    "ToolCallRecord",
    "ToolChatModel",
    "ToolError",
    "ToolOptions",
    "ToolTask",
    "build_tools",
    "calculator",
    "check",
    "close_tools",
    "evaluate_agent",
    "http_get",
    "mcp_tools",
    "python_tool",
    "rag_search",
    "run_agent",
    "sql_tool",
    "tool_use_tasks",
]
