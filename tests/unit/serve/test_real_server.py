"""A real uvicorn on 127.0.0.1 (free port, own thread): the official `openai` client unchanged,
and cancellation of a streaming request when the client disconnects."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.generate.engine import LoadedModel
from lmfoundry.serve.http_server import running_server
from lmfoundry.serve.service import ServedModel, ServeOptions
from lmfoundry.types import Message

KEY = "sk-test-key"


@pytest.fixture(scope="module")
def server(served: ServedModel, options: ServeOptions) -> Iterator[str]:
    from lmfoundry.serve.app import create_app

    with running_server(create_app(served, options, api_keys=[KEY])) as url:
        yield url


def test_openai_client_non_streaming_and_streaming(server: str, tiny_model: LoadedModel) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["tiny"]
    expected = tiny_model.generate([Message("user", "Hello")], temperature=0, max_new_tokens=10)
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=10, temperature=0
    )
    assert reply.choices[0].message.content == expected.text.rstrip(
        "\ufffd"
    )  # the server drops a cut UTF-8 tail
    assert reply.usage is not None and reply.usage.completion_tokens == expected.completion_tokens
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=10,
        temperature=0,
        stream=True,
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces) == expected.text.rstrip("\ufffd")  # the server drops a cut UTF-8 tail
    text = client.completions.create(model="tiny", prompt="The quick", max_tokens=5, temperature=0)
    assert text.choices[0].text == tiny_model.generate(
        "The quick", temperature=0, max_new_tokens=5
    ).text.rstrip("\ufffd")


def test_openai_client_sees_errors_as_exceptions(server: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "a"}])
    assert "does not exist" in info.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[], max_tokens=2)


def test_client_disconnect_cancels_the_stream(
    tiny_llama_dir: Path, options: ServeOptions, served_factory: Any
) -> None:
    import httpx

    from lmfoundry.serve.app import create_app

    slow = served_factory(tiny_llama_dir, options)
    # A slowed-down model (the dependency) so that 64 tokens take over a second: only a cancel ends it early.
    slow.scheduler.model.register_forward_pre_hook(lambda *_: time.sleep(0.02))
    body: dict[str, Any] = {
        "model": "tiny",
        "prompt": "Hi",
        "max_tokens": 64,
        "temperature": 0,
        "stream": True,
    }
    try:
        with running_server(create_app(slow, options)) as url, httpx.Client(base_url=url, timeout=10) as http:
            with http.stream("POST", "/v1/completions", json=body) as response:
                assert next(line for line in response.iter_lines() if line.startswith("data: "))
            deadline = time.monotonic() + 5
            while not slow.scheduler.counts["stopped"] and time.monotonic() < deadline:
                time.sleep(0.02)
        assert slow.scheduler.counts["stopped"] == 1
        assert slow.scheduler.counts["completed"] == 0
        assert slow.scheduler.counts["tokens"] < 40
        assert slow.scheduler.active() == 0
    finally:
        slow.close()
