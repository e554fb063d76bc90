"""Structured output and tool calling through the HTTP API, on the batching scheduler: JSON schemas
hold for every choice of a batch, bad schemas and tool specs are 400s naming the field, tool calls
come back in the OpenAI shape (streamed or not), and a tool result round-trips."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.serve.service import ServedModel, ServeOptions
from tool_specs import ADD

POINT = {
    "type": "object",
    "properties": {
        "x": {"type": "integer", "minimum": -9, "maximum": 9},
        "label": {"type": "string", "maxLength": 6},
    },
    "required": ["x", "label"],
    "additionalProperties": False,
}
ECHO = {
    "type": "function",
    "function": {
        "name": "echo",
        "parameters": {
            "type": "object",
            "properties": {"word": {"enum": ["hi", "yo"]}},
            "required": ["word"],
        },
    },
}


OPTIONS = ServeOptions(embedder=None, max_tokens=700, default_max_tokens=400, max_n=4, max_batch=8)


@pytest.fixture(scope="module")
def long_served(tiny_long_dir: Path, served_factory: Any) -> Iterator[ServedModel]:
    model = served_factory(tiny_long_dir, OPTIONS)
    yield model
    model.close()


@pytest.fixture(scope="module")
def api(long_served: ServedModel) -> Any:
    from fastapi.testclient import TestClient

    from lmfoundry.serve.app import create_app

    return TestClient(create_app(long_served, OPTIONS))


def _chat(api: Any, **body: Any) -> Any:
    return api.post(
        "/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": "go"}], **body},
    )


def test_json_schema_holds_for_every_choice_in_a_batch(api: Any) -> None:
    import jsonschema

    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "point", "schema": POINT, "strict": True},
    }
    reply = _chat(api, response_format=response_format, n=4, temperature=1.0, seed=7, max_tokens=200)
    assert reply.status_code == 200, reply.text
    for choice in reply.json()["choices"]:
        assert choice["finish_reason"] == "stop"
        jsonschema.validate(json.loads(choice["message"]["content"]), POINT)


def test_constrained_and_free_requests_share_a_batch(api: Any) -> None:
    import concurrent.futures

    import jsonschema

    response_format = {"type": "json_schema", "json_schema": {"name": "point", "schema": POINT}}
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        constrained = [
            pool.submit(_chat, api, response_format=response_format, temperature=1.0, seed=i, max_tokens=200)
            for i in range(3)
        ]
        free = [pool.submit(_chat, api, temperature=1.0, seed=i, max_tokens=30) for i in range(3)]
        for future in constrained:
            jsonschema.validate(json.loads(future.result().json()["choices"][0]["message"]["content"]), POINT)
        assert all(f.result().status_code == 200 for f in free)


def test_greedy_json_matches_the_engine_alone(api: Any, tiny_long_dir: Path) -> None:
    import lmfoundry
    from lmfoundry.types import Constraint, Message

    alone = lmfoundry.load(str(tiny_long_dir), backend="transformers").generate(
        [Message("user", "go")], temperature=0, max_new_tokens=200, constraint=Constraint.json(POINT)
    )
    reply = _chat(
        api,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": POINT}},
        temperature=0,
        max_tokens=200,
    )
    assert reply.json()["choices"][0]["message"]["content"] == alone.text


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "p", "schema": {"type": "objekt"}},
                }
            },
            None,
            "objekt",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format", "json_object or json_schema"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools", "letters, digits"),
        (
            {"tools": [ADD], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
            "not among",
        ),
        ({"tools": [ADD], "response_format": {"type": "json_object"}}, "response_format", "not both"),
    ],
)
def test_bad_structured_requests_are_400s_naming_the_problem(
    api: Any, body: dict, param: str | None, message: str
) -> None:
    reply = _chat(api, **body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert message in error["message"]
    if param:
        assert error["param"] == param


def test_required_named_and_none_tool_choice(api: Any) -> None:
    required = _chat(api, tools=[ADD, ECHO], tool_choice="required", temperature=1.0, seed=1).json()[
        "choices"
    ][0]
    assert required["finish_reason"] == "tool_calls" and required["message"]["tool_calls"]
    named = _chat(
        api,
        tools=[ADD, ECHO],
        tool_choice={"type": "function", "function": {"name": "echo"}},
        temperature=1.0,
        seed=2,
    ).json()
    calls = named["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["echo"]
    assert json.loads(calls[0]["function"]["arguments"])["word"] in ("hi", "yo")
    none = _chat(api, tools=[ADD], tool_choice="none", max_tokens=20).json()["choices"][0]
    assert "tool_calls" not in none["message"] and none["finish_reason"] in ("stop", "length")


def test_streamed_tool_call_assembles_into_valid_arguments(api: Any) -> None:
    import jsonschema

    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "add"}],
        "tools": [ADD],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "temperature": 1.0,
        "seed": 3,
        "stream": True,
    }
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    with api.stream("POST", "/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[6:])["choices"][0]
            finish = choice["finish_reason"] or finish
            for delta in choice["delta"].get("tool_calls", []):
                call = calls.setdefault(delta["index"], {"id": None, "name": "", "arguments": ""})
                call["id"] = delta.get("id") or call["id"]
                call["name"] += delta.get("function", {}).get("name") or ""
                call["arguments"] += delta.get("function", {}).get("arguments") or ""
    assert finish == "tool_calls" and list(calls) == [0]
    assert calls[0]["name"] == "add" and calls[0]["id"].startswith("call_")
    jsonschema.validate(json.loads(calls[0]["arguments"]), ADD["function"]["parameters"])


def test_tool_result_round_trips_to_an_answer(api: Any) -> None:
    first = _chat(api, tools=[ADD], tool_choice="required", parallel_tool_calls=False, temperature=0).json()[
        "choices"
    ][0]["message"]
    call = first["tool_calls"][0]
    messages = [
        {"role": "user", "content": "add 2 and 3"},
        first,
        {"role": "tool", "tool_call_id": call["id"], "content": "5"},
    ]
    final = api.post(
        "/v1/chat/completions",
        json={
            "model": "tiny",
            "messages": messages,
            "tools": [ADD],
            "tool_choice": "none",
            "max_tokens": 20,
            "temperature": 0,
        },
    )
    assert final.status_code == 200, final.text
    answer = final.json()["choices"][0]
    assert "tool_calls" not in answer["message"] and isinstance(answer["message"]["content"], str)


def test_a_replayed_call_with_broken_arguments_is_a_400(api: Any) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{oops"}}
    messages = [
        {"role": "user", "content": "add"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]
    reply = api.post("/v1/chat/completions", json={"model": "tiny", "messages": messages, "tools": [ADD]})
    assert reply.status_code == 400 and "not valid JSON" in reply.json()["error"]["message"]
