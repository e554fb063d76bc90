"""Token delivery on the event loop (`serve.streaming`): concurrent streams get exactly the text the
engine prints alone, no thread is started per stream, a stop string frees the row, and a
request's error reaches its consumer. A tiny random Llama in GGUF on the llama.cpp batch path."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.generate.engine import LoadedModel
from lmfoundry.serve import streaming
from lmfoundry.serve.scheduler import RequestTimeoutError
from lmfoundry.serve.service import ServedModel, ServeOptions
from lmfoundry.types import SamplingParams

pytest.importorskip("llama_cpp")

PROMPTS = ["The quick brown fox", "What is the capital", "assert statement", "Summarize the dialogue"]


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    import lmfoundry
    from tiny import write_tiny_gguf

    path: Path = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    return lmfoundry.load(str(path), backend="llama_cpp", threads=2)


@pytest.fixture
def served(llama: LoadedModel) -> Iterator[ServedModel]:
    model = ServedModel.create(llama, options=ServeOptions(max_batch=4, prefix_cache=0, embedder=None))
    yield model
    model.close()


def _consume_all(served: ServedModel, params: SamplingParams) -> tuple[list[str], list[Any], int]:
    """Start every prompt at once, stream them concurrently on one loop; texts, results, and the
    most threads alive while they streamed."""
    most = threading.active_count()

    async def one(prompt: str) -> tuple[str, Any]:
        nonlocal most
        generation = served.start(served.prompt_ids(prompt), params, None, None)
        pieces, result = [], None
        async for event in streaming.events(generation):
            most = max(most, threading.active_count())
            pieces.append(event.delta)
            result = event.result or result
        return "".join(pieces), result

    async def run() -> list[tuple[str, Any]]:
        return list(await asyncio.gather(*(one(p) for p in PROMPTS)))

    outputs = asyncio.run(run())
    return [text for text, _ in outputs], [result for _, result in outputs], most


def test_concurrent_streams_equal_the_engine_alone_without_a_thread_each(
    llama: LoadedModel, served: ServedModel
) -> None:
    params = SamplingParams(temperature=0, max_new_tokens=24)
    alone = [llama.generate(p, params) for p in PROMPTS]
    before = threading.active_count()
    texts, results, most = _consume_all(served, params)
    assert texts == [r.text for r in alone]
    assert [(r.text, r.completion_tokens, r.finish_reason) for r in results] == [
        (r.text, r.completion_tokens, r.finish_reason) for r in alone
    ]
    assert most <= before + 1, "streams must not each hold a thread (asyncio.run's loop may add one)"


def test_a_stop_string_ends_the_stream_and_frees_its_row(llama: LoadedModel, served: ServedModel) -> None:
    full = llama.generate(PROMPTS[0], SamplingParams(temperature=0, max_new_tokens=24)).text
    stop = full[4:7]
    params = SamplingParams(temperature=0, max_new_tokens=24, stop=(stop,))
    texts, results, _ = _consume_all(served, params)
    assert texts[0] == full[: full.find(stop)] and results[0].stopped_by == stop
    for _ in range(200):  # the scheduler drops cancelled rows at its next step
        if served.scheduler.active() == 0:
            break
        threading.Event().wait(0.01)
    assert served.scheduler.active() == 0


def test_a_request_error_reaches_the_consumer(served: ServedModel) -> None:
    params = SamplingParams(temperature=0, max_new_tokens=2000)
    generation = served.start(served.prompt_ids(PROMPTS[1]), params, None, timeout_s=0.05)

    async def drain() -> None:
        async for _ in streaming.events(generation):
            pass

    with pytest.raises(RequestTimeoutError):
        asyncio.run(drain())
