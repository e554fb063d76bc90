"""`lmf serve` as a real process on the packaged SmolLM2-135M-Instruct, driven by the openai client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def server(lmf_home: Path) -> Iterator[str]:
    port = _free_port()
    lmf = Path(sys.executable).parent / "lmf"
    cmd = [
        str(lmf),
        "serve",
        "smollm2-135m-instruct",
        "--port",
        str(port),
        "--embedder",
        "none",
        "--api-key",
        "sk-int",
        "--max-tokens",
        "64",
    ]
    proc = subprocess.Popen(
        cmd, env={**os.environ, "LMF_HOME": str(lmf_home)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 150
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited: {proc.stdout.read().decode()[-2000:] if proc.stdout else ''}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server did not start in time")
            time.sleep(0.5)
        print(f"server ready after {time.monotonic() - deadline + 150:.1f} s")
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_packaged_model_behind_lmf_serve(server: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="sk-int", max_retries=0)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    reply = client.chat.completions.create(
        model="smollm2-135m-instruct", messages=messages, max_tokens=12, temperature=0
    )
    text = reply.choices[0].message.content or ""
    assert "Paris" in text
    stream = client.chat.completions.create(
        model="smollm2-135m-instruct", messages=messages, max_tokens=12, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2-135m-instruct", messages=messages, max_tokens=1000)
