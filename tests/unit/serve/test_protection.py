"""API keys, body size limit, the bounded queue (429 + Retry-After) and per-request timeouts."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.serve.http_server import running_server
from lmfoundry.serve.middleware import load_api_keys
from lmfoundry.serve.service import ServedModel, ServeOptions

BODY = {"model": "tiny", "prompt": "Hi", "max_tokens": 2}


def _client(served: ServedModel, options: ServeOptions, **kw: Any) -> Any:
    from fastapi.testclient import TestClient

    from lmfoundry.serve.app import create_app

    return TestClient(create_app(served, options, **kw))


def test_api_keys_guard_everything_but_health(
    served: ServedModel, options: ServeOptions, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# team keys\nsk-file\n\n")
    client = _client(served, options, api_keys=load_api_keys(["sk-cli"], keys_file))
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "sk-cli"},
        {"Authorization": "Basic sk-cli"},
    ):
        response = client.post("/v1/completions", json=BODY, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
    assert client.get("/metrics").status_code == 401
    assert (
        client.post("/v1/completions", content="{", headers={"content-type": "application/json"}).status_code
        == 401
    )
    for key in ("sk-cli", "sk-file"):
        assert (
            client.post("/v1/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}).status_code
            == 200
        )
    assert client.get("/health").status_code == 200


def test_api_key_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        load_api_keys([], tmp_path / "missing")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(InvalidInputError, match="no keys"):
        load_api_keys([], tmp_path / "empty")


def test_body_size_limit(served: ServedModel) -> None:
    options = ServeOptions(embedder=None, max_body_bytes=2048)
    client = _client(served, options)
    big = {"model": "tiny", "prompt": "x" * 5000}
    response = client.post("/v1/completions", json=big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(10):
            yield b" " * 1000

    response = client.post("/v1/completions", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.post("/v1/completions", json=BODY).status_code == 200


@pytest.fixture()
def slow(tiny_llama_dir: Path, served_factory: Any) -> Any:
    """A served tiny model whose forward passes take 20 ms (a slowed dependency), one batch slot."""
    options = ServeOptions(embedder=None, max_batch=1, max_queue=1, timeout_s=30)
    model = served_factory(tiny_llama_dir, options)
    model.scheduler.model.register_forward_pre_hook(lambda *_: time.sleep(0.02))
    yield model, options
    model.close()


def test_full_queue_answers_429_with_retry_after(slow: Any) -> None:
    import httpx

    from lmfoundry.serve.app import create_app

    served, options = slow
    # request 1 is held inside a forward pass until the end (however few tokens it would generate)
    entered, gate = threading.Event(), threading.Event()
    hold = served.scheduler.model.register_forward_pre_hook(lambda *_: (entered.set(), gate.wait(30)))
    short = {"model": "tiny", "prompt": "Hi", "max_tokens": 5, "temperature": 0}
    try:
        with running_server(create_app(served, options)) as url:

            def post() -> httpx.Response:  # a connection of its own per request
                return httpx.post(f"{url}/v1/completions", json=short, timeout=30)

            first = threading.Thread(target=post)
            first.start()
            assert entered.wait(10), "request 1 never reached the model"
            waiter = threading.Thread(target=post)
            waiter.start()  # request 2 waits in the queue
            deadline = time.monotonic() + 10
            while len(served.scheduler.waiting) < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            refused = post()  # request 3: no room
            gate.set()
            assert refused.status_code == 429
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"]["type"] == "rate_limit_error"
            first.join(timeout=30)
            waiter.join(timeout=30)
            assert httpx.get(f"{url}/health", timeout=30).status_code == 200
    finally:
        gate.set()
        hold.remove()


def test_request_timeout_answers_504_and_stream_error_chunk(
    tiny_llama_dir: Path, served_factory: Any
) -> None:
    import json

    from fastapi.testclient import TestClient

    from lmfoundry.serve.app import create_app

    options = ServeOptions(embedder=None, timeout_s=0.1)
    served = served_factory(tiny_llama_dir, options)
    served.scheduler.model.register_forward_pre_hook(lambda *_: time.sleep(0.02))
    try:
        client = TestClient(create_app(served, options))
        body = {"model": "tiny", "prompt": "Hi", "max_tokens": 100, "temperature": 0}
        response = client.post("/v1/completions", json=body)
        assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
        with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as stream:
            lines = [line for line in stream.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        assert json.loads(lines[-2][6:])["error"]["code"] == "timeout"
    finally:
        served.close()
