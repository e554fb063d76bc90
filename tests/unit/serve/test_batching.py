"""Continuous batching: batched rows must produce what each request produces alone (the engine's
single-request path is the reference), whatever the mix of prompt lengths and join times."""

from __future__ import annotations

import threading
import time

import pytest

from lmfoundry.generate.batched import BatchedDecoder
from lmfoundry.generate.engine import LoadedModel
from lmfoundry.serve.scheduler import BatchScheduler, Handle, QueueFullError, RequestTimeoutError
from lmfoundry.types import SamplingParams

PROMPTS = [
    "The quick brown fox",
    "Hi",
    "What is the capital of France? Paris is the capital of",
    "Person1: Hello, how are you? Person2: I am fine, thank you. Person1:",
    "assert",
]


def _alone(model: LoadedModel, prompt: str, params: SamplingParams) -> list[int]:
    """Reference ids from the engine, including the EOS id if one was produced."""
    result = model.generate(prompt, params)
    extra = [] if result.completion_tokens == len(result.token_ids) else [next(iter(model.runtime.eos_ids))]
    return result.token_ids + extra


def test_decoder_with_staggered_joins_matches_single_runs(tiny_model: LoadedModel) -> None:
    runtime = tiny_model.runtime
    expected = [tiny_model.generate(p, temperature=0, max_new_tokens=18).token_ids for p in PROMPTS]
    decoder = BatchedDecoder(runtime.model)
    outputs: dict[int, list[int]] = {i: [] for i in range(len(PROMPTS))}
    pending, step = list(range(len(PROMPTS))), 0
    while pending or len(decoder):
        if pending and step % 3 == 0:  # a new request joins every third step, mid-flight
            i = pending.pop(0)
            ids = runtime.encode(PROMPTS[i])
            logits, kv = decoder.prefill(ids)
            outputs[i].append(int(logits.argmax()))
            decoder.add(i, kv, len(ids), outputs[i][-1])
        step += 1
        if not len(decoder):
            continue
        finished = set()
        for row, row_logits in zip(decoder.rows, decoder.step(), strict=True):
            row.next_token = int(row_logits.argmax())
            outputs[row.key].append(row.next_token)
            if row.next_token in runtime.eos_ids or len(outputs[row.key]) >= 18:
                finished.add(row.key)
        decoder.remove(finished)
    for i, want in enumerate(expected):
        got = [t for t in outputs[i] if t not in runtime.eos_ids]
        assert got == want, f"prompt {i} ({PROMPTS[i]!r}) diverged in the batch"


def _run_all(scheduler: BatchScheduler, handles: list[Handle]) -> list[list[int]]:
    for handle in handles:
        scheduler.submit(handle)
    return [list(handle) for handle in handles]


@pytest.fixture()
def scheduler(tiny_model: LoadedModel):  # type: ignore[no-untyped-def]
    sched = BatchScheduler(tiny_model.runtime.model, tiny_model.runtime.eos_ids, max_batch=3, max_queue=8)
    sched.start()
    yield sched
    sched.stop()


def test_scheduler_greedy_and_seeded_rows_match_single_runs(
    tiny_model: LoadedModel, scheduler: BatchScheduler
) -> None:
    # More requests than batch slots, so some wait and join as others leave; mixed greedy and sampled.
    params = [SamplingParams(temperature=0, max_new_tokens=n) for n in (5, 20, 9)] + [
        SamplingParams(temperature=1.0, top_k=40, seed=s, max_new_tokens=12) for s in (1, 2, 3)
    ]
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(params))]
    handles = [
        Handle(tiny_model.runtime.encode(p), sp, None, None) for p, sp in zip(prompts, params, strict=True)
    ]
    got = _run_all(scheduler, handles)
    for prompt, sp, tokens in zip(prompts, params, got, strict=True):
        assert tokens == _alone(tiny_model, prompt, sp)
    assert scheduler.active() == 0
    assert all(h.started_at and h.first_token_at and h.finished_at for h in handles)


def test_cancel_frees_the_row_and_others_continue(tiny_model: LoadedModel, scheduler: BatchScheduler) -> None:
    long = SamplingParams(temperature=0, max_new_tokens=200)
    victim = Handle(tiny_model.runtime.encode("Hi"), long, None, None)
    other = Handle(
        tiny_model.runtime.encode("The quick"), SamplingParams(temperature=0, max_new_tokens=30), None, None
    )
    scheduler.submit(victim)
    scheduler.submit(other)
    first = next(iter(victim))
    victim.cancel()
    rest = list(victim)
    assert len(rest) + 1 < 200 and first is not None
    assert list(other) == _alone(tiny_model, "The quick", other.params)
    deadline = time.monotonic() + 5
    while scheduler.active() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert scheduler.active() == 0


def test_timeout_stops_a_request_with_an_error(tiny_model: LoadedModel, scheduler: BatchScheduler) -> None:
    handle = Handle(
        tiny_model.runtime.encode("Hi"), SamplingParams(temperature=0, max_new_tokens=250), None, 0.05
    )
    scheduler.submit(handle)
    with pytest.raises(RequestTimeoutError, match="timeout"):
        list(handle)
    assert len(handle.generated) < 250


def test_bounded_queue_refuses_instead_of_growing(tiny_model: LoadedModel) -> None:
    sched = BatchScheduler(tiny_model.runtime.model, tiny_model.runtime.eos_ids, max_batch=1, max_queue=2)
    # not started: nothing leaves the queue, so the third submission must be refused
    params = SamplingParams(temperature=0, max_new_tokens=2)
    for _ in range(2):
        sched.submit(Handle([5, 6], params, None, None))
    with pytest.raises(QueueFullError) as info:
        sched.submit(Handle([5, 6], params, None, None))
    assert info.value.retry_after_s >= 1


def test_call_runs_on_the_model_thread_between_steps(scheduler: BatchScheduler) -> None:
    assert scheduler.call(lambda: threading.current_thread().name) == "lmf-batch-scheduler"
    with pytest.raises(ZeroDivisionError):
        scheduler.call(lambda: 1 / 0)
    assert scheduler.call(lambda: 42) == 42  # the loop survived the error


def test_a_failing_prefill_fails_only_that_request(
    tiny_model: LoadedModel, scheduler: BatchScheduler
) -> None:
    bad = Handle(
        [10_000], SamplingParams(temperature=0, max_new_tokens=3), None, None
    )  # id outside the vocab
    good = Handle(
        tiny_model.runtime.encode("Hi"), SamplingParams(temperature=0, max_new_tokens=4), None, None
    )
    scheduler.submit(bad)
    scheduler.submit(good)
    with pytest.raises(IndexError):
        list(bad)
    assert list(good) == _alone(tiny_model, "Hi", good.params)


def test_sequential_scheduler_serves_any_backend_one_at_a_time(tiny_model: LoadedModel) -> None:
    """The llama.cpp path: one request at a time through `backend.token_stream` (here the HF backend)."""
    from lmfoundry.serve.scheduler import SequentialScheduler

    sched = SequentialScheduler(tiny_model.runtime, max_queue=4)
    sched.start()
    try:
        params = [
            SamplingParams(temperature=0, max_new_tokens=10),
            SamplingParams(temperature=1.0, seed=3, max_new_tokens=10),
        ]
        handles = [
            Handle(tiny_model.runtime.encode(p), sp, None, None)
            for p, sp in zip(PROMPTS[:2], params, strict=True)
        ]
        got = _run_all(sched, handles)  # type: ignore[arg-type]
        for prompt, sp, tokens in zip(PROMPTS[:2], params, got, strict=True):
            assert tokens == _alone(tiny_model, prompt, sp)
        cancelled = Handle(
            tiny_model.runtime.encode("Hi"), SamplingParams(temperature=0, max_new_tokens=200), None, None
        )
        sched.submit(cancelled)
        next(iter(cancelled))
        cancelled.cancel()
        assert len(list(cancelled)) < 199
        assert sched.counts["completed"] == 2 and sched.counts["stopped"] == 1
    finally:
        sched.stop()
