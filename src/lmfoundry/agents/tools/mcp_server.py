"""MCP servers as tools: start a server over stdio, list its tools, call them through the session.

The MCP client is async and the agent loop is not, so an `McpConnection` owns a background thread
running an event loop; the whole client (process, streams, session) lives in one task there, and
the loop thread submits calls to it. A call waits at most its timeout, and also returns as soon as
the server process is gone, so a server that dies mid-call becomes a ToolError, never a hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Sequence
from typing import Any

from lmfoundry.agents.tools.base import Tool, ToolError
from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.plugins import require

START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 60.0


class McpConnection:
    """One running MCP server and its client session; `close()` stops both."""

    def __init__(self, command: Sequence[str], *, start_timeout_s: float = START_TIMEOUT_S) -> None:
        if not command:
            raise InvalidInputError("an MCP server needs a command, e.g. ['python', 'server.py']")
        require("mcp", extra="agents")
        self.command = list(command)
        self.tools: list[dict[str, Any]] = []
        self._session: Any = None
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-client", daemon=True)
        self._thread.start()
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._stop: asyncio.Event | None = None
        self._main = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self._wait_ready(start_timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        done, _ = concurrent.futures.wait([self._ready, self._main], timeout_s, "FIRST_COMPLETED")
        if self._ready in done and self._ready.exception() is None:
            return
        reason = _reason(self._main) if self._main in done else f"no answer within {timeout_s:.0f} s"
        self.close()
        raise LmfError(f"MCP server {' '.join(self.command)!r} did not start: {reason}")

    async def _serve(self) -> None:
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        self._stop = asyncio.Event()
        params = StdioServerParameters(command=self.command[0], args=self.command[1:])
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            self.tools = [tool.model_dump(by_alias=True) for tool in listed.tools]
            self._session = session
            self._ready.set_result(None)
            await self._stop.wait()

    def call(self, name: str, arguments: dict[str, Any], timeout_s: float = CALL_TIMEOUT_S) -> str:
        """The tool's text result; a ToolError when it reports an error, times out or the server died."""
        if self._main.done() or self._session is None:
            raise ToolError(f"MCP server {' '.join(self.command)!r} is not running ({_reason(self._main)})")
        call = asyncio.run_coroutine_threadsafe(self._session.call_tool(name, arguments), self._loop)
        done, _ = concurrent.futures.wait([call, self._main], timeout_s, "FIRST_COMPLETED")
        if call not in done:
            call.cancel()
            why = (
                f"the server exited ({_reason(self._main)})"
                if self._main.done()
                else f"no answer in {timeout_s:.1f} s"
            )
            raise ToolError(f"MCP tool {name!r} failed: {why}")
        if call.exception() is not None:
            raise ToolError(f"MCP tool {name!r} failed: {call.exception()}")
        return result_text(call.result().model_dump(by_alias=True))

    def close(self) -> None:
        """Stop the session and the server process, then the event-loop thread (once)."""
        if self._closed:
            return
        self._closed = True
        if self._stop is not None and not self._main.done():
            self._loop.call_soon_threadsafe(self._stop.set)
        try:
            self._main.result(timeout=10)
        except BaseException:  # the server already failed, or would not stop: the loop goes anyway
            self._main.cancel()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


def _reason(future: concurrent.futures.Future[Any]) -> str:
    if not future.done():
        return "still running"
    if future.cancelled():
        return "stopped"
    err = future.exception()
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    return f"{type(err).__name__}: {err}" if err else "exited"


def result_text(result: dict[str, Any]) -> str:
    """The text blocks of a CallToolResult (dumped by alias); an error result becomes a ToolError."""
    texts = [b.get("text", "") if b.get("type") == "text" else f"[{b.get('type')} content]"
             for b in result.get("content") or []]  # fmt: skip
    text = "\n".join(texts)
    if not texts and result.get("structuredContent") is not None:
        text = str(result["structuredContent"])
    if result.get("isError"):
        raise ToolError(text or "the MCP tool reported an error")
    return text


def mcp_tools(command: Sequence[str], *, call_timeout_s: float = CALL_TIMEOUT_S) -> list[Tool]:
    """Start the MCP server `command` and wrap each of its tools; the first tool's `close` stops the
    server (every tool shares one connection, so close any list of tools with `close_tools`)."""
    connection = McpConnection(command)
    tools = [_wrap(connection, spec, call_timeout_s) for spec in connection.tools]
    if not tools:
        connection.close()
        raise LmfError(f"MCP server {' '.join(command)!r} offers no tools")
    return tools


def _wrap(connection: McpConnection, spec: dict[str, Any], call_timeout_s: float) -> Tool:
    name = spec["name"]

    def run(timeout_s: float | None = None, **arguments: Any) -> str:
        limit = call_timeout_s if timeout_s is None else max(0.1, min(call_timeout_s, timeout_s))
        return connection.call(name, arguments, limit)

    schema = spec.get("inputSchema") or {"type": "object", "properties": {}}
    return Tool(
        name=name,
        description=spec.get("description") or f"MCP tool {name}",
        parameters={**schema, "additionalProperties": schema.get("additionalProperties", True)},
        fn=run,
        takes_timeout=True,
        close=connection.close,
    )
