"""Deliver a generation's text to asyncio: the scheduler thread wakes the event loop when tokens
arrive, and the loop turns them into text (the engine's `TextStream`); cancelled when the client
goes away.

Why not a worker thread per stream blocking on the next token: with 16 streams that is 16 threads
woken per decode step, each followed by a hop back to the loop, all competing with the model's own
threads for the same cores; a stalled thread then stalls the whole batch. Here the scheduler only
schedules `asyncio.Event.set` on the loop (`call_soon_threadsafe`), and detokenizing a token is a
few microseconds of loop time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from lmfoundry.generate.text_stream import StreamEvent

if TYPE_CHECKING:
    from lmfoundry.generate.text_stream import GenerationResult
    from lmfoundry.serve.service import Generation


def _waker(loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> Callable[[], None]:
    def waker() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed (shutting down): nobody waits
            loop.call_soon_threadsafe(wake.set)

    return waker


async def events(generation: Generation) -> AsyncIterator[StreamEvent]:
    """Yield a generation's events; cancel it if the consumer stops early."""
    handle, text = generation.handle, generation.text_stream()
    wake = asyncio.Event()
    handle.set_waker(_waker(asyncio.get_running_loop(), wake))
    try:
        while not text.finished:
            wake.clear()  # before taking: a token pushed after this sets it again
            tokens, ended = handle.take()
            for event in text.events(tokens):
                yield event
            if ended and not text.finished:
                if handle.error is not None:
                    raise handle.error
                break
            if not tokens and not ended:
                await wake.wait()
        yield text.final()
    finally:
        generation.cancel()


async def collect(generation: Generation) -> GenerationResult:
    """Run a generation to the end and return its result."""
    result = None
    async for event in events(generation):
        result = event.result or result
    assert result is not None
    return result


async def merged(generations: list[Generation]) -> AsyncIterator[tuple[int, StreamEvent]]:
    """Interleave the events of several generations (the `n` choices of one request) as they come."""
    if len(generations) == 1:
        async for event in events(generations[0]):
            yield 0, event
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    finished = object()

    async def pump(index: int, generation: Generation) -> None:
        try:
            async for event in events(generation):
                await queue.put((index, event))
            await queue.put((index, finished))
        except Exception as exc:
            await queue.put((index, exc))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(generations)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if item is finished:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        for generation in generations:
            generation.cancel()
