"""Bridge blocking generation events into asyncio, with cancellation when the client goes away.

Each `next()` on a generation's event iterator blocks until the scheduler produces a token, so it
runs on a worker thread from a limiter sized to the server's concurrency bounds (the default
anyio pool of 40 threads would otherwise throttle many simultaneous streams). When the consuming
coroutine is cancelled or closed (client disconnect), the generation is cancelled so its batch row
is freed at the next step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmfoundry.generate.engine import GenerationResult, StreamEvent
    from lmfoundry.serve.service import Generation


async def events(generation: Generation, limiter: Any) -> AsyncIterator[StreamEvent]:
    """Yield a generation's events; cancel it if the consumer stops early."""
    from anyio import to_thread

    iterator = generation.events()
    try:
        while True:
            event = await to_thread.run_sync(next, iterator, None, limiter=limiter)
            if event is None:
                return
            yield event
    finally:
        generation.cancel()


async def collect(generation: Generation, limiter: Any) -> GenerationResult:
    """Run a generation to the end and return its result."""
    result = None
    async for event in events(generation, limiter):
        result = event.result or result
    assert result is not None
    return result


async def merged(generations: list[Generation], limiter: Any) -> AsyncIterator[tuple[int, StreamEvent]]:
    """Interleave the events of several generations (the `n` choices of one request) as they come."""
    if len(generations) == 1:
        async for event in events(generations[0], limiter):
            yield 0, event
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    finished = object()

    async def pump(index: int, generation: Generation) -> None:
        try:
            async for event in events(generation, limiter):
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
