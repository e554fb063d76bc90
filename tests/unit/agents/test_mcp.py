from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from agent_script import ScriptedModel, answer, call, calls
from lmfoundry.agents.loop import run_agent
from lmfoundry.agents.tools.base import ToolError, close_tools
from lmfoundry.agents.tools.calculator import calculator
from lmfoundry.agents.tools.mcp_server import mcp_tools

pytest.importorskip("mcp")

SERVER = '''
import os
try:
    from mcp.server.mcpserver import MCPServer as Server  # mcp 2
except ImportError:
    from mcp.server.fastmcp import FastMCP as Server  # mcp 1

server = Server("test-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def fail(reason: str) -> str:
    """Raise an error."""
    raise ValueError(reason)


@server.tool()
def crash() -> str:
    """Kill the server process mid-call."""
    os._exit(3)


server.run()
'''


@pytest.fixture
def server(tmp_path: Path) -> list[str]:
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    return [sys.executable, str(path)]


def test_mcp_tools_are_listed_and_called(server: list[str]) -> None:
    tools = mcp_tools(server)
    try:
        by_name = {t.name: t for t in tools}
        assert set(by_name) == {"add", "fail", "crash"}
        assert by_name["add"].description == "Add two integers."
        assert by_name["add"].parameters["required"] == ["a", "b"]
        assert by_name["add"].invoke({"a": 2, "b": 40}) == "42"
        with pytest.raises(ToolError, match="boom|Error executing tool fail"):  # mcp 2 hides the message
            by_name["fail"].invoke({"reason": "boom"})
    finally:
        close_tools(tools)


def test_a_server_that_dies_mid_call_is_a_tool_error_and_the_agent_goes_on(server: list[str]) -> None:
    tools = mcp_tools(server, call_timeout_s=10)
    model = ScriptedModel(
        calls(call("crash", {}, "c1")),
        calls(call("add", {"a": 1, "b": 2}, "c2"), call("calculator", {"expression": "1 + 2"}, "c3")),
        answer("3"),
    )
    start = time.monotonic()
    try:
        result = run_agent(model, "add", [*tools, calculator()], time_limit_s=30)
    finally:
        close_tools(tools)
    assert time.monotonic() - start < 8  # noticed when the process exits, not at the timeout
    crash, later = result.steps[0].tool_calls[0], result.steps[1].tool_calls
    assert crash.error and "MCP tool 'crash' failed" in crash.error
    assert later[0].error and later[0].error.startswith("MCP tool 'add'")  # failed, or not running
    assert later[1].observation == "3"
    assert (result.stop_reason, result.answer) == ("answer", "3")


def test_a_hanging_call_times_out(tmp_path: Path) -> None:
    path = tmp_path / "slow.py"
    path.write_text(SERVER.replace("os._exit(3)", "import time; time.sleep(30)"))
    tools = mcp_tools([sys.executable, str(path)], call_timeout_s=0.5)
    try:
        crash = next(t for t in tools if t.name == "crash")
        start = time.monotonic()
        with pytest.raises(ToolError, match="no answer in 0.5 s"):
            crash.invoke({})
        assert time.monotonic() - start < 3
    finally:
        start = time.monotonic()
        close_tools(tools)
        assert time.monotonic() - start < 15
