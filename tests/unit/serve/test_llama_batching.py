"""Continuous batching on llama.cpp (`LlamaBatchScheduler` over `LlamaBatchedDecoder`) with a tiny
random Llama written to GGUF in-process: every request must get exactly the tokens it gets alone
through `LlamaCppBackend.token_stream` (greedy and seeded sampling), however the batch is mixed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.generate.engine import LoadedModel
from lmfoundry.serve.scheduler import Handle
from lmfoundry.types import Constraint, SamplingParams

pytest.importorskip("llama_cpp")

TEXTS = [
    *("The quick brown fox", "Person1: Hello, how are you?"),
    *("What is the capital of France? Paris is the capital", "assert statement"),
    *("Summarize the dialogue. ### Instruct:", "0123456789 debug is true"),
]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny import write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def llama(tiny_gguf: Path) -> LoadedModel:
    import lmfoundry

    return lmfoundry.load(str(tiny_gguf), backend="llama_cpp", threads=2)


@pytest.fixture
def scheduler(llama: LoadedModel) -> Iterator[Any]:
    from lmfoundry.serve.llama_scheduler import LlamaBatchScheduler

    sched = LlamaBatchScheduler(llama.runtime, max_batch=4, max_queue=16)  # type: ignore[arg-type]
    sched.start()
    yield sched
    sched.stop()


def alone(llama: LoadedModel, ids: list[int], params: SamplingParams) -> list[int]:
    return list(llama.runtime.token_stream(ids, params))


def run_all(sched: Any, jobs: list[tuple[list[int], SamplingParams]]) -> list[list[int]]:
    """Submit every job at once (more than max_batch: some queue) and collect each one's tokens."""
    handles = [sched.submit(Handle(ids, params, None, None)) for ids, params in jobs]
    return [list(h) for h in handles]


def test_batched_greedy_equals_alone_with_queueing(llama: LoadedModel, scheduler: Any) -> None:
    prompts = [llama.runtime.encode(t) for t in TEXTS]
    lengths = [20, 7, 33, 12, 25, 16]  # rows leave at different steps while others join
    jobs = [
        (ids, SamplingParams(temperature=0, max_new_tokens=n))
        for ids, n in zip(prompts, lengths, strict=True)
    ]
    expected = [alone(llama, ids, params) for ids, params in jobs]
    assert run_all(scheduler, jobs) == expected
    assert scheduler.counts["completed"] == len(jobs) and scheduler.active() == 0


def test_seeded_sampling_reproducible_and_equal_to_alone(llama: LoadedModel, scheduler: Any) -> None:
    ids = llama.runtime.encode(TEXTS[0])
    params = [
        SamplingParams(temperature=0.9, top_p=0.95, top_k=40, seed=s, max_new_tokens=24) for s in (1, 2, 3)
    ]
    greedy = SamplingParams(temperature=0, repetition_penalty=1.3, max_new_tokens=24)
    jobs = [(ids, p) for p in [*params, greedy]]
    first, second = run_all(scheduler, jobs), run_all(scheduler, jobs)
    assert first == second
    assert first == [alone(llama, ids, p) for _, p in jobs]
    assert first[0] != first[1] or first[1] != first[2]  # seeds matter


def test_cancellation_frees_the_row(llama: LoadedModel, scheduler: Any) -> None:
    ids = llama.runtime.encode(TEXTS[1])
    long = scheduler.submit(Handle(ids, SamplingParams(temperature=0, max_new_tokens=200), None, None))
    other = scheduler.submit(Handle(ids, SamplingParams(temperature=0, max_new_tokens=30), None, None))
    tokens = []
    for token in long:
        tokens.append(token)
        if len(tokens) == 3:
            long.cancel()
    assert 3 <= len(tokens) < 200 and not long.exhausted
    assert list(other) == alone(llama, ids, SamplingParams(temperature=0, max_new_tokens=30))
    assert scheduler.counts["stopped"] == 1 and scheduler.active() == 0


def test_too_long_for_a_row_runs_alone(llama: LoadedModel) -> None:
    from lmfoundry.serve.llama_scheduler import LlamaBatchScheduler

    sched = LlamaBatchScheduler(llama.runtime, max_batch=2, row_context=256)  # type: ignore[arg-type]
    sched.start()
    try:
        ids = llama.runtime.encode(" ".join(TEXTS * 3))[:200]
        short = (llama.runtime.encode(TEXTS[2]), SamplingParams(temperature=0, max_new_tokens=10))
        long = (ids, SamplingParams(temperature=0, max_new_tokens=80))  # 280 > 256 positions
        assert run_all(sched, [short, long]) == [alone(llama, *short), alone(llama, *long)]
        assert sched.stats()["alone"] == 1
    finally:
        sched.stop()


def test_prefix_cache_reuses_a_finished_prompt(llama: LoadedModel) -> None:
    from lmfoundry.serve.llama_scheduler import LlamaBatchScheduler

    sched = LlamaBatchScheduler(llama.runtime, max_batch=2, prefix_cache=2)  # type: ignore[arg-type]
    sched.start()
    try:
        shared = llama.runtime.encode(" ".join(TEXTS))
        params = SamplingParams(temperature=0, max_new_tokens=12)
        first = run_all(sched, [(shared, params)])
        assert sched.stats()["reused_tokens"] == 0
        follow = shared + llama.runtime.encode(" and the lazy dog")
        second = run_all(sched, [(follow, params), (shared, params)])
        assert sched.stats()["reused_tokens"] >= 2 * len(shared) - 1
        assert second[1] == first[0]
        assert second[0] == alone(llama, follow, params)
    finally:
        sched.stop()


@pytest.fixture(scope="module")
def served(llama: LoadedModel) -> Iterator[Any]:
    from lmfoundry.serve.service import ServedModel, ServeOptions

    model = ServedModel.create(llama, name="tiny", options=ServeOptions(embedder=None, max_batch=4))
    yield model
    model.close()


def test_service_uses_batching_unless_max_batch_is_one(llama: LoadedModel, served: Any) -> None:
    from lmfoundry.serve.llama_scheduler import LlamaBatchScheduler
    from lmfoundry.serve.scheduler import SequentialScheduler
    from lmfoundry.serve.service import ServedModel, ServeOptions

    assert isinstance(served.scheduler, LlamaBatchScheduler)
    single = ServedModel.create(llama, options=ServeOptions(embedder=None, max_batch=1))
    try:
        assert isinstance(single.scheduler, SequentialScheduler)
    finally:
        single.close()


def _texts(served: Any, jobs: list[tuple[list[int], SamplingParams]]) -> list[Any]:
    """Run generations concurrently through the engine path (stop strings, grammar, text)."""
    generations = [served.start(ids, params, None, None) for ids, params in jobs]
    results: list[Any] = [None] * len(jobs)

    def consume(i: int) -> None:
        *_, last = generations[i].events()
        results[i] = last.result

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_stop_strings_and_json_in_one_batch(llama: LoadedModel, served: Any) -> None:
    prompts = [llama.runtime.encode(t) for t in TEXTS[:4]]
    plain = SamplingParams(temperature=0, max_new_tokens=24)
    full = [llama.generate(TEXTS[i], params=plain) for i in range(2)]
    stops = [full[i].text[6:9] for i in range(2)]
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "n": {"enum": [1, 2, 3]}},
        "required": ["ok", "n"],
        "additionalProperties": False,
    }
    as_json = SamplingParams(temperature=0, max_new_tokens=40, constraint=Constraint.json(schema))
    jobs = [(prompts[i], plain.replace(stop=(stops[i],))) for i in range(2)]
    jobs += [(prompts[2], as_json), (prompts[3], as_json.replace(temperature=0.8, seed=5))]
    results = _texts(served, jobs)
    for i in range(2):
        assert results[i].finish_reason == "stop" and stops[i] not in results[i].text
        assert full[i].text.startswith(results[i].text)
    for result in results[2:]:
        value = json.loads(result.text)
        assert set(value) == {"ok", "n"} and value["n"] in (1, 2, 3)
    assert served.scheduler.active() == 0


def test_rows_move_to_consecutive_ids_and_decode_as_alone(llama: LoadedModel) -> None:
    """Rows leave (their prefixes kept in the holes), a new row arrives at a high id: the next step
    moves running rows to ids 0..n-1 (swapping kept prefixes out), and every row still decodes to
    exactly its greedy tokens alone; a kept prefix that was moved is still reused correctly."""
    import numpy as np

    from lmfoundry.generate.llamacpp_batched import LlamaBatchedDecoder

    greedy = SamplingParams(temperature=0, max_new_tokens=12)
    prompts = [llama.runtime.encode(t) for t in TEXTS]
    prompts[2] = prompts[2] * 2  # long enough for the prefix cache (16 tokens or more)
    decoder = LlamaBatchedDecoder(llama.runtime.llm, max_rows=4, row_context=256, prefix_cache=2)  # type: ignore[attr-defined]
    produced: dict[int, list[int]] = {}

    def admit(key: int) -> None:
        assert decoder.can_admit()
        produced[key] = [int(np.argmax(decoder.prefill(key, prompts[key])))]
        decoder.rows[-1].next_token = produced[key][-1]

    def step() -> None:
        for row, logits in zip(decoder.rows, decoder.step(), strict=True):
            row.next_token = int(np.argmax(logits))
            produced[row.key].append(row.next_token)

    try:
        for key in range(4):
            admit(key)
        step()
        decoder.remove({0, 2})  # kept as prefixes at ids 0 and 2
        admit(4)  # takes the lowest free id, 4: the batch is now ids 1, 3, 4
        for _ in range(6):
            step()
        assert [row.seq_id for row in decoder.rows] == [0, 1, 2]
        assert sorted(decoder.cached) == [3, 4]
        reused = decoder.reused_tokens
        prompts.append(prompts[2] + produced[2][:1] + prompts[5])  # extends the moved prefix of row 2
        admit(6)
        for _ in range(4):
            step()
        assert decoder.reused_tokens > reused
    finally:
        decoder.close()
    for key, tokens in produced.items():
        assert tokens == alone(llama, prompts[key], greedy)[: len(tokens)], f"row {key}"
