"""The CPU image from deploy/Dockerfile is built here with podman and answers like `lmf serve` does.

No image registry is reachable from the project's machines, so `deploy/build-image.sh` assembles
the base image from Debian packages (mmdebstrap) and builds on top of it; torch and llama-cpp-python
come from the wheels `make install` left, so the build downloads only the light dependencies.
`make test` installs podman, runc and mmdebstrap first (tests/support/install_test_tools.sh).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = shutil.which("podman")
TAG = "localhost/lmfoundry:test"
pytestmark = pytest.mark.skipif(
    ENGINE is None or shutil.which("mmdebstrap") is None,
    reason="podman and mmdebstrap are needed (tests/support/install_test_tools.sh installs them)",
)


def _engine_flags() -> dict[str, list[str]]:
    """The flags deploy/engine-flags.sh picks for this host (runc, ulimits), read back through bash."""
    script = f'ENGINE={ENGINE}; source deploy/engine-flags.sh; echo "$ENGINE_FLAGS"; echo "$RUN_FLAGS"'
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    engine_flags, run_flags = out.stdout.splitlines()
    return {"engine": engine_flags.split(), "run": run_flags.split()}


def _podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [str(ENGINE), *_engine_flags()["engine"], *args]
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _image_id(tag: str) -> str:
    return _podman("image", "inspect", "--format", "{{.Id}}", tag, check=False).stdout.strip()


@pytest.fixture(scope="module")
def image() -> str:
    """Build (layers cached between runs); drop the previous build's image so runs do not fill the disk."""
    previous = _image_id(TAG)
    build = subprocess.run(
        ["bash", "deploy/build-image.sh", TAG], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    if previous and previous != _image_id(TAG):
        _podman("rmi", previous, check=False)
    return TAG


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[tuple[str, int]]:
    name, volume, port = (
        f"lmf-test-{uuid.uuid4().hex[:8]}",
        f"lmf-test-store-{uuid.uuid4().hex[:8]}",
        _free_port(),
    )
    _podman("volume", "create", volume)
    run_flags = _engine_flags()["run"]
    _podman(
        "run",
        "-d",
        "--name",
        name,
        *run_flags,
        "-p",
        f"127.0.0.1:{port}:8000",
        "-v",
        f"{volume}:/data",
        image,
    )
    try:
        _wait_healthy(name, port)
        yield name, port
    finally:
        _podman("rm", "-f", "-t", "2", name, check=False)
        _podman("volume", "rm", "-f", volume, check=False)


def _wait_healthy(name: str, port: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = _podman("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip()
        if state != "true":
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(2)
    logs = _podman("logs", name, check=False)
    raise AssertionError(
        f"the container stopped or never answered /health:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}"
    )


def test_image_runs_as_non_root_with_a_healthcheck(image: str) -> None:
    inspected = json.loads(_podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert "8000/tcp" in config["ExposedPorts"]
    assert "/data" in config["Volumes"]
    assert any("/health" in part for part in inspected["Healthcheck"]["Test"])


def test_container_serves_the_packaged_model(container: tuple[str, int]) -> None:
    from openai import OpenAI

    name, port = container
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
    assert [model.id for model in client.models.list().data][0] == "smollm2-135m-instruct"
    reply = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
    )
    assert reply.choices[0].message.content and reply.usage is not None and reply.usage.completion_tokens > 0
    assert _podman("exec", name, "id", "-u").stdout.strip() == "10001"
    assert _podman("healthcheck", "run", name, check=False).returncode == 0
