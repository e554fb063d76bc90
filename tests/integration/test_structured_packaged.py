"""Structured output and tool calls on the packaged SmolLM2-135M-Instruct through the official openai
client, on both backends: 20 random JSON schemas all give valid JSON; tool_choice required, a named
function and none behave as specified; a tool result round-trips; a streamed call assembles."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
NAME = "smollm2-135m-instruct"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two numbers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(autouse=True)
def lmf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Both backends load from the installed package: no pulled store needed."""
    monkeypatch.setenv("LMF_HOME", str(tmp_path))
    return tmp_path


def random_schema(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    """An object schema mixing the JSON types, bounded so a 135M model can finish it."""
    kinds = ["string", "integer", "number", "boolean", "enum", "array"] + (["object"] if depth == 0 else [])
    properties: dict[str, Any] = {}
    for i in range(rng.randint(1, 4)):
        kind = rng.choice(kinds)
        name = f"{rng.choice(['name', 'count', 'score', 'ok', 'kind', 'items', 'info'])}_{i}"
        if kind == "string":
            properties[name] = {"type": "string", "maxLength": rng.choice([8, 20])}
        elif kind == "integer":
            properties[name] = {"type": "integer", "minimum": -100, "maximum": 1000}
        elif kind == "number":
            properties[name] = {"type": "number"}
        elif kind == "boolean":
            properties[name] = {"type": "boolean"}
        elif kind == "enum":
            properties[name] = {"enum": rng.sample(["red", "green", "blue", "small", "large"], 3)}
        elif kind == "array":
            properties[name] = {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 99},
                "maxItems": 3,
            }
        else:
            properties[name] = random_schema(rng, depth + 1)
    required = sorted(rng.sample(sorted(properties), rng.randint(1, len(properties))))
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


@pytest.fixture(scope="module", params=["transformers", "llama_cpp"])
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    import openai

    import lmfoundry
    from lmfoundry.serve.app import create_app
    from lmfoundry.serve.http_server import running_server
    from lmfoundry.serve.service import ServedModel, ServeOptions

    if request.param == "llama_cpp":
        pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    options = ServeOptions(embedder=None, max_tokens=256)
    served = ServedModel.create(
        lmfoundry.load(NAME, backend=request.param, threads=2), name=NAME, options=options
    )
    try:
        with running_server(create_app(served, options)) as url:
            yield openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    finally:
        served.close()


def _ask_json(client: Any, schema: dict[str, Any], topic: str) -> Any:
    return client.chat.completions.create(
        model=NAME,
        messages=[{"role": "user", "content": f"Describe {topic} as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "thing", "schema": schema, "strict": True},
        },
        temperature=0,
        max_tokens=256,
    ).choices[0]


def test_twenty_random_schemas_all_give_valid_json(client: Any) -> None:
    import jsonschema

    rng = random.Random(16)
    schemas = [random_schema(rng) for _ in range(20)]
    topics = ["a cat", "a city", "an order", "a book", "the weather"]
    with ThreadPoolExecutor(8) as pool:
        choices = list(pool.map(lambda i: _ask_json(client, schemas[i], topics[i % 5]), range(20)))
    for schema, choice in zip(schemas, choices, strict=True):
        assert choice.finish_reason == "stop", (schema, choice.message.content)
        jsonschema.validate(json.loads(choice.message.content), schema)


def test_tool_choice_required_named_and_none(client: Any) -> None:
    ask = [{"role": "user", "content": "What's the weather in Paris?"}]
    required = client.chat.completions.create(
        model=NAME, messages=ask, tools=[WEATHER, ADD], tool_choice="required", temperature=0, max_tokens=128
    )
    assert required.choices[0].finish_reason == "tool_calls"
    assert required.choices[0].message.tool_calls[0].function.name in ("get_weather", "add")
    named = client.chat.completions.create(
        model=NAME,
        messages=ask,
        tools=[WEATHER, ADD],
        tool_choice={"type": "function", "function": {"name": "add"}},
        temperature=0,
        max_tokens=128,
    )
    calls = named.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["add"] and set(json.loads(calls[0].function.arguments)) == {
        "a",
        "b",
    }
    none = client.chat.completions.create(
        model=NAME, messages=ask, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=40
    )
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content


def test_tool_result_round_trips_to_a_final_answer(client: Any) -> None:
    messages: list[Any] = [{"role": "user", "content": "What's the weather in Paris?"}]
    first = client.chat.completions.create(
        model=NAME,
        messages=messages,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=64,
    )
    call = first.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments)["city"]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    final = client.chat.completions.create(
        model=NAME, messages=messages, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=48
    )
    assert final.choices[0].finish_reason in ("stop", "length") and final.choices[0].message.content


def test_streamed_tool_call_assembles(client: Any) -> None:
    stream = client.chat.completions.create(
        model=NAME,
        messages=[{"role": "user", "content": "Add 2 and 40."}],
        tools=[ADD],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=64,
        stream=True,
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            name += delta.function.name or ""
            arguments += delta.function.arguments or ""
    assert finish == "tool_calls" and name == "add"
    assert set(json.loads(arguments)) == {"a", "b"}
