"""The agent loop: ask the model, run the tools it calls, feed the results back, until it answers.

Every step is one model call. Tool problems (an unknown tool, arguments that are not a JSON
object, a ToolError) go back to the model as the tool message `error: ...` so it can recover;
calls that could not be made at all count as invalid, the measure of how well a model uses tools.
A reply cut at the token limit with no complete call is neither an answer nor a call: it counts
as an invalid attempt and the model is told. The run stops at the answer, after `max_steps` model calls, or when `time_limit_s` has passed
(checked between steps; tools that accept a timeout get the time that is left).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lmfoundry.agents.model import ToolChatModel
from lmfoundry.agents.tools.base import Tool, ToolArgumentError, ToolError
from lmfoundry.agents.trace import Tracer
from lmfoundry.errors import InvalidInputError

DEFAULT_SYSTEM = (
    "You solve the user's task step by step with the tools provided. Call a tool whenever it helps: "
    "do not compute, look up or guess what a tool can give you. Read each tool result; a result "
    "starting with 'error:' means the call failed, so fix it and try again. When you know the "
    "answer, reply with the answer in plain text and call no tool."
)
CUT_REPLY = (
    "your reply was cut at the token limit before it was a complete answer or tool call; "
    "answer briefly, or call a tool with shorter arguments"
)
StopReason = Literal["answer", "max_steps", "time_limit"]


@dataclass
class ToolCallRecord:
    """One tool call: what the model asked for and what it got back."""

    id: str
    name: str
    arguments: Any
    """The parsed arguments, or the raw string when they were not a JSON object."""
    observation: str
    error: str | None = None
    valid: bool = True
    """False when the call could not be made: unknown tool, unparseable or wrong arguments."""
    duration_s: float = 0.0


@dataclass
class Step:
    """One model call and the tool calls it made."""

    index: int
    content: str | None
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def errors(self) -> list[str]:
        return [call.error for call in self.tool_calls if call.error]


@dataclass
class AgentResult:
    answer: str | None
    stop_reason: StopReason
    steps: list[Step]
    messages: list[dict[str, Any]]
    duration_s: float
    trace_id: str | None = None

    @property
    def valid_calls(self) -> int:
        return sum(call.valid for step in self.steps for call in step.tool_calls)

    @property
    def invalid_calls(self) -> int:
        return sum(not call.valid for step in self.steps for call in step.tool_calls)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(valid_calls=self.valid_calls, invalid_calls=self.invalid_calls)
        return data


@dataclass
class _Run:
    """What one run's steps share."""

    model: ToolChatModel
    tools: dict[str, Tool]
    messages: list[dict[str, Any]]
    tracer: Tracer
    deadline: float
    tool_choice: str | dict[str, Any]
    first_tool_choice: str | dict[str, Any] | None = None
    """The first step's tool_choice ("required" makes a model that would answer from memory look
    something up first); later steps use `tool_choice`."""


def run_agent(
    model: ToolChatModel,
    task: str,
    tools: Sequence[Tool],
    *,
    system: str | None = None,
    max_steps: int = 8,
    time_limit_s: float = 120.0,
    on_step: Callable[[Step], object] | None = None,
    trace: bool = False,
    tool_choice: str | dict[str, Any] = "auto",
    first_tool_choice: str | dict[str, Any] | None = None,
) -> AgentResult:
    """Run `task` to an answer or a limit. `on_step` sees each step as it finishes; `trace` records
    the run in MLflow; `first_tool_choice` overrides `tool_choice` on the first step only. The
    tools stay open (close them with `close_tools`)."""
    if max_steps < 1 or time_limit_s <= 0:
        raise InvalidInputError(
            f"max_steps must be >= 1 and time_limit_s > 0, got {max_steps}, {time_limit_s}"
        )
    by_name = _by_name(tools)
    start = time.monotonic()
    messages = [{"role": "system", "content": system or DEFAULT_SYSTEM}, {"role": "user", "content": task}]
    tracer = Tracer(trace)
    run = _Run(model, by_name, messages, tracer, start + time_limit_s, tool_choice, first_tool_choice)
    steps: list[Step] = []
    with tracer.span("agent", "AGENT", {"task": task, "tools": list(by_name)}) as span:
        answer, stop = _loop(run, max_steps, steps, on_step)
        span.set_outputs({"answer": answer, "stop_reason": stop})
    tracer.flush()
    return AgentResult(answer, stop, steps, messages, time.monotonic() - start, tracer.trace_id)


def _by_name(tools: Sequence[Tool]) -> dict[str, Tool]:
    by_name: dict[str, Tool] = {}
    for tool in tools:
        if tool.name in by_name:
            raise InvalidInputError(f"two tools are named {tool.name!r}")
        by_name[tool.name] = tool
    return by_name


def _loop(
    run: _Run, max_steps: int, steps: list[Step], on_step: Callable[[Step], object] | None
) -> tuple[str | None, StopReason]:
    for index in range(max_steps):
        if time.monotonic() >= run.deadline:
            return None, "time_limit"
        step, final = _step(run, index)
        steps.append(step)
        if on_step is not None:
            on_step(step)
        if final:
            return step.content or "", "answer"
    return None, "max_steps"


def _step(run: _Run, index: int) -> tuple[Step, bool]:
    """One model call and its tool calls; True when the model answered instead of calling tools."""
    start = time.monotonic()
    specs = [tool.spec() for tool in run.tools.values()]
    with run.tracer.span(f"step {index}", "CHAIN"):
        with run.tracer.span("model", "CHAT_MODEL", {"messages": list(run.messages)}) as span:
            choice = run.first_tool_choice if index == 0 and run.first_tool_choice else run.tool_choice
            message = run.model.complete(run.messages, specs, choice)
            span.set_outputs(message)
        calls = _normalized_calls(message.get("tool_calls") or [], index)
        run.messages.append(
            {
                "role": "assistant",
                "content": message.get("content"),
                **({"tool_calls": calls} if calls else {}),
            }
        )
        records = [_run_call(run, call) for call in calls]
        for record in records:
            run.messages.append({"role": "tool", "tool_call_id": record.id, "content": record.observation})
        cut = not calls and message.get("finish_reason") == "length"
        if cut:  # neither an answer nor a call: say so, count it, go on
            records = [_failed(f"cut_{index}", "", message.get("content"), CUT_REPLY, valid=False)]
            run.messages.append({"role": "user", "content": f"error: {CUT_REPLY}"})
    step = Step(index, message.get("content"), records, time.monotonic() - start)
    return step, not calls and not cut


def _normalized_calls(calls: list[dict[str, Any]], step: int) -> list[dict[str, Any]]:
    """Tool calls with an id each (some local models leave it out) and the standard shape."""
    normalized = []
    for n, call in enumerate(calls):
        function = call.get("function") or {}
        normalized.append({
            "id": call.get("id") or f"call_{step}_{n}",
            "type": "function",
            "function": {"name": function.get("name", ""), "arguments": function.get("arguments", "")},
        })  # fmt: skip
    return normalized


def _run_call(run: _Run, call: dict[str, Any]) -> ToolCallRecord:
    name, raw = call["function"]["name"], call["function"]["arguments"]
    with run.tracer.span(name or "unnamed tool", "TOOL", {"arguments": raw}) as span:
        start = time.monotonic()
        record = _execute(run, call["id"], name, raw)
        record.duration_s = time.monotonic() - start
        span.set_outputs(record.observation)
    return record


def _execute(run: _Run, call_id: str, name: str, raw: Any) -> ToolCallRecord:
    tool = run.tools.get(name)
    if tool is None:
        return _failed(
            call_id, name, raw, f"unknown tool {name!r} (available: {', '.join(run.tools)})", False
        )
    try:
        arguments = parse_arguments(raw)
    except ToolArgumentError as err:
        return _failed(call_id, name, raw, str(err), False)
    try:
        observation = tool.invoke(arguments, timeout_s=max(0.0, run.deadline - time.monotonic()))
    except ToolArgumentError as err:
        return _failed(call_id, name, arguments, str(err), False)
    except ToolError as err:
        return _failed(call_id, name, arguments, str(err), True)
    except Exception as err:  # a tool bug: the model is told, the step records it, the run goes on
        return _failed(call_id, name, arguments, f"tool {name!r} crashed: {type(err).__name__}: {err}", True)
    return ToolCallRecord(call_id, name, arguments, observation)


def _failed(call_id: str, name: str, arguments: Any, error: str, valid: bool) -> ToolCallRecord:
    return ToolCallRecord(call_id, name, arguments, f"error: {error}", error, valid)


def parse_arguments(raw: Any) -> dict[str, Any]:
    """The call's arguments as a dict: a JSON object string (empty means none) or a dict already."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, json.JSONDecodeError) as err:
        raise ToolArgumentError(f"arguments are not valid JSON ({err}): {str(raw)[:200]!r}") from None
    if not isinstance(value, dict):
        raise ToolArgumentError(f"arguments must be a JSON object, got {type(value).__name__}")
    return value
