from __future__ import annotations

import time

import pytest

from agent_script import ScriptedModel, answer, call, calls
from lmfoundry.agents.loop import DEFAULT_SYSTEM, Step, run_agent
from lmfoundry.agents.tools.base import Tool, object_schema
from lmfoundry.agents.tools.calculator import calculator
from lmfoundry.errors import InvalidInputError


def test_tool_call_then_answer() -> None:
    model = ScriptedModel(
        calls(call("calculator", {"expression": "6 * 7"}), content="I will compute."), answer("42")
    )
    printed: list[Step] = []
    result = run_agent(model, "What is 6 * 7?", [calculator()], on_step=printed.append)
    assert (result.answer, result.stop_reason) == ("42", "answer")
    assert (result.valid_calls, result.invalid_calls) == (1, 0)
    assert [s.index for s in printed] == [0, 1] and printed == result.steps
    first = result.steps[0]
    assert first.content == "I will compute."
    assert (
        first.tool_calls[0].arguments == {"expression": "6 * 7"} and first.tool_calls[0].observation == "42"
    )
    seen = model.seen[1]
    assert seen[0] == {"role": "system", "content": DEFAULT_SYSTEM}
    assert seen[1] == {"role": "user", "content": "What is 6 * 7?"}
    assert seen[2]["role"] == "assistant" and seen[2]["tool_calls"][0]["id"] == "id-calculator"
    assert seen[3] == {"role": "tool", "tool_call_id": "id-calculator", "content": "42"}
    assert model.tools[0][0]["function"]["name"] == "calculator"


def test_tool_errors_are_fed_back_and_the_model_recovers() -> None:
    model = ScriptedModel(
        calls(call("calculator", {"expression": "1 / 0"})),
        calls(call("calculator", {"expression": "1 / 4"}, call_id="second")),
        answer("0.25"),
    )
    result = run_agent(model, "divide", [calculator()])
    assert model.seen[1][-1] == {
        "role": "tool",
        "tool_call_id": "id-calculator",
        "content": "error: division by zero",
    }
    assert model.seen[2][-1]["content"] == "0.25"
    assert result.steps[0].errors == ["division by zero"]
    assert (result.valid_calls, result.invalid_calls, result.answer) == (2, 0, "0.25")


def test_unknown_tools_and_bad_json_are_invalid_calls() -> None:
    model = ScriptedModel(
        calls(
            call("weather", {"city": "Oslo"}, "a"),
            call("calculator", '{"expression": "1 +', "b"),
            call("calculator", "[1, 2]", "c"),
            call("calculator", {"expr": "1"}, "d"),
            {"type": "function", "function": {"name": "calculator", "arguments": '{"expression": "2+2"}'}},
        ),
        answer("done"),
    )
    result = run_agent(model, "task", [calculator()])
    tool_messages = [m for m in model.seen[1] if m["role"] == "tool"]
    contents = [m["content"] for m in tool_messages]
    assert contents[0] == "error: unknown tool 'weather' (available: calculator)"
    assert contents[1].startswith("error: arguments are not valid JSON")
    assert contents[2] == "error: arguments must be a JSON object, got list"
    assert contents[3].startswith("error: missing required argument(s): expression")
    assert (
        contents[4] == "4" and tool_messages[4]["tool_call_id"] == "call_0_4"
    )  # an id is made up when missing
    assert (result.valid_calls, result.invalid_calls) == (1, 4)


def test_step_limit() -> None:
    model = ScriptedModel(*[calls(call("calculator", {"expression": "1 + 1"}))] * 10)
    result = run_agent(model, "loop forever", [calculator()], max_steps=3)
    assert (result.stop_reason, result.answer, len(result.steps)) == ("max_steps", None, 3)
    assert len(model.seen) == 3


def test_time_limit_with_a_slow_tool() -> None:
    timeouts: list[float | None] = []

    def nap(seconds: float, timeout_s: float | None = None) -> str:
        timeouts.append(timeout_s)
        time.sleep(seconds)
        return "rested"

    sleeper = Tool("nap", "Sleep.", object_schema({"seconds": {"type": "number"}}), nap, takes_timeout=True)
    model = ScriptedModel(*[calls(call("nap", {"seconds": 0.3}))] * 10)
    start = time.monotonic()
    result = run_agent(model, "sleep", [sleeper], max_steps=10, time_limit_s=0.5)
    assert result.stop_reason == "time_limit" and result.answer is None
    assert len(result.steps) == 2 and time.monotonic() - start < 1.5
    assert timeouts[0] is not None and 0.3 < timeouts[0] <= 0.5 and timeouts[1] < timeouts[0]


def test_a_crashing_tool_is_reported_and_the_run_goes_on() -> None:
    def broken() -> str:
        raise RuntimeError("bug")

    tool = Tool("broken", "Breaks.", object_schema({}), broken)
    model = ScriptedModel(calls(call("broken", {})), answer("ok"))
    result = run_agent(model, "task", [tool])
    assert model.seen[1][-1]["content"] == "error: tool 'broken' crashed: RuntimeError: bug"
    assert result.answer == "ok" and result.valid_calls == 1


def test_bad_settings() -> None:
    with pytest.raises(InvalidInputError, match="max_steps"):
        run_agent(ScriptedModel(), "t", [], max_steps=0)
    with pytest.raises(InvalidInputError, match="two tools"):
        run_agent(ScriptedModel(), "t", [calculator(), calculator()])


def test_result_as_json_data() -> None:
    result = run_agent(
        ScriptedModel(calls(call("calculator", {"expression": "2"})), answer("2")), "t", [calculator()]
    )
    data = result.to_dict()
    assert data["stop_reason"] == "answer" and data["valid_calls"] == 1
    assert data["steps"][0]["tool_calls"][0]["name"] == "calculator"


def test_first_tool_choice_applies_to_the_first_step_only() -> None:
    from lmfoundry.agents.tools import calculator

    model = ScriptedModel(calls(call("calculator", {"expression": "2 + 3"})), answer("5"))
    result = run_agent(model, "2 + 3?", [calculator()], first_tool_choice="required")
    assert model.choices == ["required", "auto"] and result.answer == "5"


def test_a_reply_cut_at_the_token_limit_is_an_invalid_attempt_not_an_answer() -> None:
    from lmfoundry.agents.tools import calculator

    cut = {
        "role": "assistant",
        "content": '<tool_call>{"name": "calculator", "argu',
        "finish_reason": "length",
    }
    model = ScriptedModel(cut, answer("5"))
    result = run_agent(model, "2 + 3?", [calculator()])
    assert result.answer == "5" and result.stop_reason == "answer"
    assert result.invalid_calls == 1 and "cut at the token limit" in model.seen[1][-1]["content"]
