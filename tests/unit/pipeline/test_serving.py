"""Serving side: promote/rollback change what a running server answers; the remote (OpenAI API)
backend matches local generation; adapter hot-loading for our server and vLLM's API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lmfoundry
from lmfoundry.cli.main import main
from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.pipeline.remote import RemoteModel
from lmfoundry.pipeline.server_control import load_adapter
from lmfoundry.types import Message, SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=8)
PROMPT = "Person1: Hello, how are you?"


@pytest.fixture(scope="module")
def server(tiny_llama_dir: Path, tiny_adapters: list[Path]) -> Iterator[str]:
    from lmfoundry.serve.app import create_app
    from lmfoundry.serve.http_server import running_server
    from lmfoundry.serve.service import ServedModel, ServeOptions

    options = ServeOptions(embedder=None, max_tokens=64, adapter_roots=[tiny_adapters[0].parent])
    served = ServedModel.create(
        lmfoundry.load(str(tiny_llama_dir), backend="transformers"), name="tiny", options=options
    )
    try:
        with running_server(create_app(served, options)) as url:
            yield url
    finally:
        served.close()


def _text(text: str) -> str:
    """The tiny random model can stop mid-way through a UTF-8 sequence; the server drops such an
    incomplete tail while local generation shows it as U+FFFD, so compare without it."""
    return text.rstrip("\ufffd")


def _local(tiny_llama_dir: Path, adapter: Path | None, prompt: Any = PROMPT) -> str:
    model = lmfoundry.load(
        str(tiny_llama_dir), backend="transformers", adapters=[str(adapter)] if adapter else None
    )
    return _text(model.generate(prompt, GREEDY).text)


def _ask(model: RemoteModel, prompt: Any = PROMPT) -> str:
    return _text(model.generate(prompt, GREEDY).text)


def test_promote_and_rollback_change_what_the_server_answers(
    server: str,
    tiny_llama_dir: Path,
    tiny_adapters: list[Path],
    mlflow_db: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lmfoundry.track.registry import Pointer, register

    expected = [_local(tiny_llama_dir, a) for a in tiny_adapters]
    assert expected[0] != expected[1], "test precondition: the two adapters must answer differently"
    for adapter in tiny_adapters:
        register("summ", Pointer(str(tiny_llama_dir), str(adapter)))
    champion = RemoteModel(server, "tiny:champion")
    assert main(["registry", "promote", "summ", "1", "--server", server]) == 0
    assert _ask(champion) == expected[0]
    assert main(["registry", "promote", "summ", "2", "--server", server]) == 0
    assert "champion -> v2 (was v1)" in capsys.readouterr().out
    assert _ask(champion) == expected[1]
    assert main(["registry", "rollback", "summ", "--server", server, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1
    assert _ask(champion) == expected[0]
    assert main(["registry", "show", "summ"]) == 0
    assert "champion history: v1 -> v2" not in capsys.readouterr().out  # rolled back: v2 left the trail
    assert main(["registry", "rollback", "summ"]) == 1  # nothing before v1
    assert "no earlier version" in capsys.readouterr().err


def test_remote_backend_matches_local_generation(server: str, tiny_llama_dir: Path) -> None:
    remote = RemoteModel(server, "tiny")
    assert _ask(remote) == _local(tiny_llama_dir, None)
    messages = [Message("user", "What is the capital of France?")]
    result = remote.generate(messages, GREEDY)
    assert _text(result.text) == _local(tiny_llama_dir, None, messages)
    assert result.completion_tokens > 0 and result.backend == "remote"
    with pytest.raises(LmfError, match="failed"):
        RemoteModel(server, "no-such-model").generate(PROMPT, GREEDY)


def test_load_adapter_is_idempotent_and_replaces_by_name(server: str, tiny_adapters: list[Path]) -> None:
    import httpx

    with httpx.Client(base_url=server) as client:
        first = load_adapter(client, "slot", tiny_adapters[0])
        assert load_adapter(client, "slot", tiny_adapters[0]) == first
        load_adapter(client, "slot", tiny_adapters[1])
        listing = {a["name"]: a["path"] for a in client.get("/v1/adapters").json()["data"]}
        assert listing["slot"] == str(tiny_adapters[1].resolve())
        with pytest.raises(LmfError, match="HTTP 4"):
            load_adapter(client, "other", tiny_adapters[0].parent)  # not an adapter dir
        with pytest.raises(InvalidInputError, match="server kind"):
            load_adapter(client, "slot", tiny_adapters[0], kind="tgi")


def test_vllm_runtime_lora_api() -> None:
    """vLLM's runtime LoRA endpoints, with a stand-in for the vLLM server."""
    import httpx

    calls: list[tuple[str, dict[str, Any]]] = []

    def vllm(request: httpx.Request) -> httpx.Response:
        calls.append((request.url.path, json.loads(request.content)))
        if request.url.path == "/v1/unload_lora_adapter":
            return httpx.Response(404, json={"error": {"message": "not loaded"}})
        return httpx.Response(200, text="Success")

    with httpx.Client(base_url="http://vllm:8000", transport=httpx.MockTransport(vllm)) as client:
        load_adapter(client, "champion", "/models/adapter-v3", kind="vllm")
    assert calls == [
        ("/v1/unload_lora_adapter", {"lora_name": "champion"}),
        ("/v1/load_lora_adapter", {"lora_name": "champion", "lora_path": "/models/adapter-v3"}),
    ]
