"""The server on the llama.cpp backend (continuous batching, `LlamaBatchScheduler`) with the
packaged GGUF, through the official openai client: chat, streaming, text completion, concurrent
streams and a small batch job, each equal to what the engine produces for the same model without
HTTP (one request at a time through `LlamaCppBackend.token_stream`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmfoundry.generate.engine import LoadedModel
from lmfoundry.types import Message

pytestmark = pytest.mark.integration
NAME = "smollm2-135m-instruct"
QUESTION = "What is the capital of France?"


@pytest.fixture(autouse=True)
def lmf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The GGUF ships in its package: no pulled store (the integration conftest's slow fixture) needed."""
    monkeypatch.setenv("LMF_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def llama_model() -> LoadedModel:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    import lmfoundry

    return lmfoundry.load(NAME, backend="llama_cpp", threads=2)


@pytest.fixture(scope="module")
def server(llama_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from lmfoundry.serve.app import create_app
    from lmfoundry.serve.http_server import running_server
    from lmfoundry.serve.llama_scheduler import LlamaBatchScheduler
    from lmfoundry.serve.service import ServedModel, ServeOptions

    options = ServeOptions(embedder=None, max_tokens=64, max_batch=4)
    served = ServedModel.create(llama_model, name=NAME, options=options)
    assert isinstance(served.scheduler, LlamaBatchScheduler) and served.adapters is None
    app = create_app(served, options, batch_dir=tmp_path_factory.mktemp("batches"))
    try:
        with running_server(app) as url:
            yield url
    finally:
        served.close()


def test_chat_and_streaming_match_the_engine(server: str, llama_model: LoadedModel) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    expected = llama_model.generate([Message("user", QUESTION)], temperature=0, max_new_tokens=12)
    messages = [{"role": "user", "content": QUESTION}]
    reply = client.chat.completions.create(model=NAME, messages=messages, max_tokens=12, temperature=0)
    assert reply.choices[0].message.content == expected.text
    assert reply.usage is not None and reply.usage.completion_tokens == expected.completion_tokens
    assert reply.usage.prompt_tokens == expected.prompt_tokens
    stream = client.chat.completions.create(
        model=NAME, messages=messages, max_tokens=12, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == expected.text
    text = client.completions.create(
        model=NAME, prompt="The capital of France is", max_tokens=6, temperature=0
    )
    assert (
        text.choices[0].text
        == llama_model.generate("The capital of France is", temperature=0, max_new_tokens=6).text
    )
    with pytest.raises(openai.NotFoundError):  # no adapters on llama.cpp
        client.chat.completions.create(model=f"{NAME}:nope", messages=messages, max_tokens=2)


def test_concurrent_streams_match_one_at_a_time(server: str, llama_model: LoadedModel) -> None:
    """Six streaming chats at once on a 4-row batch (two queue) give the engine's greedy text."""
    from concurrent.futures import ThreadPoolExecutor

    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    questions = [QUESTION, "What is 1 + 1?", "Name a color.", "Tell me a joke.", "Hi", "Who are you?"]

    def stream(question: str) -> str:
        chunks = client.chat.completions.create(
            model=NAME,
            messages=[{"role": "user", "content": question}],
            max_tokens=24,
            temperature=0,
            stream=True,
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    with ThreadPoolExecutor(len(questions)) as pool:
        texts = list(pool.map(stream, questions))
    for question, text in zip(questions, texts, strict=True):
        expected = llama_model.generate([Message("user", question)], temperature=0, max_new_tokens=24)
        assert text == expected.text


def test_batch_job_on_the_llama_cpp_backend(server: str, llama_model: LoadedModel) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    questions = {"fr": QUESTION, "two": "What is 1 + 1?"}
    lines = [
        json.dumps(
            {
                "custom_id": cid,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": NAME,
                    "messages": [{"role": "user", "content": q}],
                    "max_tokens": 8,
                    "temperature": 0,
                },
            }
        )
        for cid, q in questions.items()
    ]
    upload = client.files.create(file=("q.jsonl", "\n".join(lines).encode()), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 60
    while (batch := client.batches.retrieve(batch.id)).status != "completed":
        assert time.monotonic() < deadline and batch.status == "in_progress"
        time.sleep(0.2)
    assert batch.output_file_id is not None
    records = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    assert [r["custom_id"] for r in records] == list(questions)
    for record in records:
        expected = llama_model.generate(
            [Message("user", questions[record["custom_id"]])], temperature=0, max_new_tokens=8
        )
        assert record["response"]["body"]["choices"][0]["message"]["content"] == expected.text
