"""Tool calling without a server: validation of `tools`/`tool_choice`, the fallback prompt format,
parsing, and `LoadedModel.chat` on a tiny random model (calls always parse and match their schema)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lmfoundry
from lmfoundry.errors import InvalidInputError
from lmfoundry.generate.engine import LoadedModel
from lmfoundry.generate.tools import fallback_messages, parse_tool_calls, tool_spec
from lmfoundry.types import Message
from tool_specs import ADD, WEATHER


@pytest.fixture(scope="module")
def model(tiny_long_dir: Path) -> LoadedModel:
    return lmfoundry.load(str(tiny_long_dir), backend="transformers")


@pytest.mark.parametrize(
    ("tools", "choice", "message"),
    [
        ([{"type": "function"}], None, r"tools\[0\] must be"),
        ([{"type": "function", "function": {"name": "bad name!"}}], None, "letters, digits"),
        ([WEATHER, WEATHER], None, "unique"),
        ([WEATHER], "sometimes", "tool_choice must be"),
        ([WEATHER], {"type": "function", "function": {"name": "add"}}, "not among the tools"),
        ([], "required", "no tools were given"),
        ([WEATHER], {"function": {}}, "tool_choice must look like"),
    ],
)
def test_bad_tools_are_named(tools: list, choice: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        tool_spec(tools, choice, None)  # type: ignore[arg-type]


def test_none_or_no_tools_means_no_spec() -> None:
    assert tool_spec([WEATHER], "none", None) is None
    assert tool_spec(None, None, None) is None


def test_parse_tool_calls_keeps_text_and_drops_repeats() -> None:
    call = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    content, calls = parse_tool_calls(f"Let me add.\n{call}\n{call}\n<tool_call>not json</tool_call>")
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"a": 1, "b": 2}]
    assert calls[0]["id"].startswith("call_") and calls[0]["function"]["name"] == "add"
    assert content == "Let me add.\n\n\n<tool_call>not json</tool_call>"
    assert parse_tool_calls("just words") == ("just words", [])


def test_fallback_format_describes_tools_and_replays_calls() -> None:
    spec = tool_spec([WEATHER], "auto", None)
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "days": 2}'},
    }
    messages = [
        Message("system", "Be brief."),
        Message("user", "Weather?"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "sunny", tool_call_id="call_1"),
    ]
    out = fallback_messages(messages, spec)
    assert (
        out[0].role == "system"
        and out[0].content.startswith("Be brief.")
        and '"get_weather"' in out[0].content
    )
    assert (
        out[2].content
        == '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}</tool_call>'
    )
    assert out[3] == Message("user", "<tool_response>\nsunny\n</tool_response>")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_required_calls_always_parse_and_validate(model: LoadedModel, seed: int) -> None:
    import jsonschema

    reply = model.chat(
        [{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER, ADD],
        tool_choice="required",
        temperature=1.0,
        seed=seed,
        max_new_tokens=600,  # up to MAX_PARALLEL_CALLS calls, spelled nearly a character a token
    )
    assert reply.finish_reason == "tool_calls", reply.result.text
    schemas = {"get_weather": WEATHER, "add": ADD}
    for call in reply.message["tool_calls"]:
        function = call["function"]
        jsonschema.validate(
            json.loads(function["arguments"]), schemas[function["name"]]["function"]["parameters"]
        )


def test_named_function_is_the_one_called(model: LoadedModel) -> None:
    reply = model.chat(
        [{"role": "user", "content": "hi"}],
        tools=[WEATHER, ADD],
        tool_choice={"type": "function", "function": {"name": "add"}},
        temperature=1.0,
        seed=3,
        max_new_tokens=200,
    )
    assert [c["function"]["name"] for c in reply.message["tool_calls"]] == ["add"]


def test_tool_choice_none_never_calls(model: LoadedModel) -> None:
    reply = model.chat(
        [{"role": "user", "content": "hi"}],
        tools=[WEATHER],
        tool_choice="none",
        temperature=0,
        max_new_tokens=20,
    )
    assert "tool_calls" not in reply.message and reply.finish_reason in ("stop", "length")


def test_tools_and_json_format_together_are_refused(model: LoadedModel) -> None:
    with pytest.raises(InvalidInputError, match="either tools or a JSON"):
        model.chat(
            [{"role": "user", "content": "hi"}], tools=[WEATHER], response_format={"type": "json_object"}
        )


def test_a_profile_system_prompt_is_kept_with_tools(model: LoadedModel) -> None:
    from lmfoundry.generate.engine import LoadedModel as Loaded

    with_system = Loaded("p", model.runtime, system="You are terse.")
    ids = with_system.tool_prompt_ids([Message("user", "hi")], tool_spec([WEATHER], "auto", None))
    text = model.tokenizer.decode(ids)
    assert "You are terse." in text and '"get_weather"' in text
