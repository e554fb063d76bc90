"""The OpenAI endpoints in-process: response shapes, sampling fields, streaming, and error objects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lmfoundry.generate.engine import LoadedModel
from lmfoundry.types import Message

NAME = "tiny"


def chat(content: str = "hi", **kw: Any) -> dict[str, Any]:
    return {"model": NAME, "messages": [{"role": "user", "content": content}], **kw}


def sse_events(client: Any, path: str, body: dict[str, Any]) -> list[Any]:
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def test_models_lists_the_served_model(client: Any) -> None:
    data = client.get("/v1/models").json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == [NAME]
    assert client.get(f"/v1/models/{NAME}").json()["id"] == NAME
    assert client.get("/v1/models/nope").status_code == 404


def test_chat_completion_greedy_equals_the_engine(client: Any, tiny_model: LoadedModel) -> None:
    body = client.post("/v1/chat/completions", json=chat("Hello there", max_tokens=12, temperature=0)).json()
    expected = tiny_model.generate([Message("user", "Hello there")], temperature=0, max_new_tokens=12)
    assert (
        body["object"] == "chat.completion" and body["model"] == NAME and body["id"].startswith("chatcmpl-")
    )
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": expected.text.rstrip("\ufffd")}
    assert choice["finish_reason"] == expected.finish_reason
    assert body["usage"] == {
        "prompt_tokens": expected.prompt_tokens,
        "completion_tokens": expected.completion_tokens,
        "total_tokens": expected.prompt_tokens + expected.completion_tokens,
    }


def test_text_completion_with_stop_and_list_prompts(client: Any, tiny_model: LoadedModel) -> None:
    full = tiny_model.generate("The cat sat on the", temperature=0, max_new_tokens=20)
    assert len(full.text) > 6
    stop = full.text[3:6]
    assert "\ufffd" not in stop  # a prompt whose greedy text is printable there
    body = client.post(
        "/v1/completions",
        json={
            "model": NAME,
            "prompt": ["The cat sat on the", "Hi"],
            "max_tokens": 20,
            "temperature": 0,
            "stop": stop,
        },
    ).json()
    first, second = body["choices"]
    assert (
        first["text"] == full.text[: full.text.find(stop)].rstrip("\ufffd")
        and first["finish_reason"] == "stop"
    )
    assert second["index"] == 1
    assert second["text"] == tiny_model.generate(
        "Hi", temperature=0, max_new_tokens=20, stop=[stop]
    ).text.rstrip("\ufffd")


def test_token_id_prompt_equals_text_prompt(client: Any, tiny_model: LoadedModel) -> None:
    ids = tiny_model.runtime.encode("Person1: Hello")
    by_ids = client.post(
        "/v1/completions", json={"model": NAME, "prompt": ids, "max_tokens": 8, "temperature": 0}
    )
    by_text = client.post(
        "/v1/completions", json={"model": NAME, "prompt": "Person1: Hello", "max_tokens": 8, "temperature": 0}
    )
    assert by_ids.json()["choices"][0]["text"] == by_text.json()["choices"][0]["text"]


def test_max_tokens_n_and_seed(client: Any) -> None:
    body = client.post("/v1/chat/completions", json=chat(max_tokens=3, temperature=1.0, n=3, seed=7)).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["usage"]["completion_tokens"] <= 9
    again = client.post("/v1/chat/completions", json=chat(max_tokens=3, temperature=1.0, n=3, seed=7)).json()
    assert [c["message"] for c in body["choices"]] == [c["message"] for c in again["choices"]]
    other = client.post(
        "/v1/chat/completions", json=chat(max_tokens=12, temperature=1.0, top_p=0.9, seed=8)
    ).json()
    same = client.post(
        "/v1/chat/completions", json=chat(max_tokens=12, temperature=1.0, top_p=0.9, seed=8)
    ).json()
    assert other["choices"][0]["message"] == same["choices"][0]["message"]


def test_chat_stream_has_the_openai_chunk_format(client: Any) -> None:
    plain = client.post("/v1/chat/completions", json=chat(max_tokens=10, temperature=0)).json()
    events = sse_events(
        client,
        "/v1/chat/completions",
        chat(max_tokens=10, temperature=0, stream=True, stream_options={"include_usage": True}),
    )
    assert all(e["object"] == "chat.completion.chunk" and e["id"] == events[0]["id"] for e in events)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    finishes = [e["choices"][0]["finish_reason"] for e in events if e["choices"]]
    assert finishes[-1] == plain["choices"][0]["finish_reason"] and set(finishes[:-1]) == {None}
    assert events[-1]["choices"] == [] and events[-1]["usage"] == plain["usage"]


def test_completion_stream_with_n_interleaves_indexes(client: Any) -> None:
    events = sse_events(
        client,
        "/v1/completions",
        {"model": NAME, "prompt": "Hi", "max_tokens": 6, "n": 2, "stream": True, "temperature": 0},
    )
    texts = {0: "", 1: ""}
    for event in events:
        choice = event["choices"][0]
        texts[choice["index"]] += choice["text"]
    assert texts[0] == texts[1]  # greedy: both choices agree
    assert sum(1 for e in events if e["choices"][0]["finish_reason"]) == 2


def test_accepted_and_ignored_openai_fields(client: Any) -> None:
    body = chat(
        max_tokens=2,
        user="u1",
        logprobs=False,
        presence_penalty=0,
        frequency_penalty=0.0,
        logit_bias={},
        response_format={"type": "text"},
    )
    assert client.post("/v1/chat/completions", json=body).status_code == 200


BAD_REQUESTS = [
    ("bad json", "{", 400, None),
    ("not an object", "[]", 400, None),
    ("missing messages", {"model": NAME}, 400, "messages"),
    ("empty messages", {"model": NAME, "messages": []}, 400, "messages"),
    ("unknown field", chat(foo=1), 400, "foo"),
    (
        "unknown message field",
        {"model": NAME, "messages": [{"role": "user", "content": "a", "x": 1}]},
        400,
        None,
    ),
    ("bad role", {"model": NAME, "messages": [{"role": "wizard", "content": "a"}]}, 400, None),
    ("wrong type", chat(max_tokens="ten"), 400, "max_tokens"),
    ("negative max_tokens", chat(max_tokens=-1), 400, "max_tokens"),
    ("max_tokens over the limit", chat(max_tokens=10_000), 400, "max_tokens"),
    ("huge n", chat(n=1000), 400, "n"),
    ("temperature out of range", chat(temperature=5), 400, "temperature"),
    ("top_p zero", chat(top_p=0), 400, "top_p"),
    ("unknown model", {"model": "gpt-9", "messages": [{"role": "user", "content": "a"}]}, 404, "model"),
    (
        "unknown adapter",
        {"model": f"{NAME}:nope", "messages": [{"role": "user", "content": "a"}]},
        404,
        "model",
    ),
    (
        "path traversal adapter",
        {"model": f"{NAME}:../../etc", "messages": [{"role": "user", "content": "a"}]},
        400,
        None,
    ),
    ("logprobs requested", chat(logprobs=True), 400, "logprobs"),
    ("presence penalty", chat(presence_penalty=1.0), 400, "presence_penalty"),
    ("tools", chat(tools=[{"type": "function"}]), 400, "tools"),
    ("too many stops", chat(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    ("empty stop", chat(stop=[""]), 400, "stop"),
    ("model empty", {"model": "", "messages": [{"role": "user", "content": "a"}]}, 400, "model"),
    ("prompt too long", chat("fox " * 400), 400, None),
    ("null body", "null", 400, None),
]


@pytest.mark.parametrize(("label", "body", "status", "param"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_chat_requests_get_a_4xx_error_object(
    client: Any, label: str, body: Any, status: int, param: str | None
) -> None:
    if isinstance(body, str):
        response = client.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
    else:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param
    assert client.get("/health").status_code == 200  # still alive


BAD_COMPLETIONS = [
    {"model": NAME},
    {"model": NAME, "prompt": []},
    {"model": NAME, "prompt": [1.5]},
    {"model": NAME, "prompt": [999_999]},
    {"model": NAME, "prompt": "a", "logprobs": 9},
    {"model": NAME, "prompt": "a", "best_of": 3},
    {"model": NAME, "prompt": ["a", "b"], "stream": True},
    {"model": NAME, "prompt": ["a", "b", "c"], "n": 2},
    {"model": NAME, "prompt": "", "max_tokens": 2},
]


@pytest.mark.parametrize("body", BAD_COMPLETIONS)
def test_bad_completion_requests_get_400(client: Any, body: dict[str, Any]) -> None:
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_route_and_method_use_the_error_object(client: Any) -> None:
    assert client.get("/v1/nothing").json()["error"]["message"] == "no such endpoint"
    response = client.get("/v1/chat/completions")
    assert response.status_code == 405 and "error" in response.json()
