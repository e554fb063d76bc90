"""Schedulers: one thread owns the model and turns submitted requests into token streams.

`BatchScheduler` (transformers) does continuous batching: every loop iteration first prefills new
arrivals (so time-to-first-token stays low under load), then runs one batched decode step over all
active requests; finished, cancelled and timed-out rows leave between steps. `SequentialScheduler`
(any backend) runs one request at a time; llama.cpp batches in `llama_scheduler.py` on `_Loop`.

All share `Handle` (token queue, cancel flag, timings), a bounded wait queue that refuses work
rather than grow, and `call()` to run a function on the model thread between steps.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import LmfError
from lmfoundry.generate.batched import BatchedDecoder
from lmfoundry.generate.sampling import make_generator, sample_next

if TYPE_CHECKING:
    from lmfoundry.generate.backend import Backend
    from lmfoundry.types import SamplingParams

_END = object()


class QueueFullError(LmfError):
    """The wait queue is at its bound; the client should retry later."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTimeoutError(LmfError):
    """The request ran past its deadline and was stopped."""


class Handle:
    """One submitted generation: iterate it for token ids (an EOS id, if produced, comes last)."""

    def __init__(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        adapter: str | None,
        timeout_s: float | None,
        *,
        grammar: Any = None,
    ) -> None:
        self.prompt_ids = prompt_ids
        self.params = params
        self.adapter = adapter
        self.grammar = grammar
        """The request's constraint state (`TokenConstraint`), applied by the batch scheduler."""
        self.submitted_at = time.perf_counter()
        self.deadline = self.submitted_at + timeout_s if timeout_s else None
        self.started_at: float | None = None
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.generated: list[int] = []
        self.exhausted = False
        self.error: Exception | None = None
        self._tokens: queue.Queue[Any] = queue.Queue()
        self._cancelled = threading.Event()
        self._done_callbacks: list[Callable[[Handle], None]] = []
        self._waker: Callable[[], None] | None = None

    # -- consumer side
    def __iter__(self) -> Iterator[int]:
        while True:
            item = self._tokens.get()
            if item is _END:
                if self.error is not None:
                    raise self.error
                return
            yield item

    def set_waker(self, waker: Callable[[], None]) -> None:
        """Call `waker` (from the scheduler thread) after each token and at the end: an event loop
        consumer awaits it and then `take()`s what arrived, so no thread blocks per stream."""
        self._waker = waker

    def take(self) -> tuple[list[int], bool]:
        """The tokens that arrived since the last call, and whether the stream has ended (then
        `error` says whether it failed). Never blocks."""
        tokens: list[int] = []
        while True:
            try:
                item = self._tokens.get_nowait()
            except queue.Empty:
                return tokens, False
            if item is _END:
                return tokens, True
            tokens.append(item)

    def cancel(self) -> None:
        """Stop generating (client went away or a stop string matched); safe from any thread."""
        self._cancelled.set()

    def on_done(self, callback: Callable[[Handle], None]) -> None:
        self._done_callbacks.append(callback)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    # -- scheduler side
    def should_stop(self, now: float) -> bool:
        if self.deadline is not None and now > self.deadline and not self._cancelled.is_set():
            self.error = RequestTimeoutError(
                f"request exceeded its {self.deadline - self.submitted_at:.0f} s timeout"
            )
        return self._cancelled.is_set() or self.error is not None

    def push(self, token: int, last: bool = False) -> None:
        """Hand one token to the consumer; `last` marks a natural end (EOS or the token limit)."""
        self.exhausted = self.exhausted or last
        now = time.perf_counter()
        self.first_token_at = self.first_token_at or now
        self.generated.append(token)
        self._tokens.put(token)
        if self._waker is not None:
            self._waker()

    def emit(self, token: int, eos_ids: frozenset[int]) -> bool:
        """`push` a sampled token; True when the request is finished (EOS or max_new_tokens)."""
        done = token in eos_ids or len(self.generated) + 1 >= self.params.max_new_tokens
        self.push(token, last=done)
        return done

    def finish(self, error: Exception | None = None) -> None:
        if self.done:
            return
        self.error = self.error or error
        self.finished_at = time.perf_counter()
        self._tokens.put(_END)
        if self._waker is not None:
            self._waker()
        for callback in self._done_callbacks:
            callback(self)


class _Loop:
    """The thread, the bounded wait queue and `call()`, shared by both schedulers."""

    def __init__(self, *, max_queue: int, name: str) -> None:
        self.max_queue = max_queue
        self.waiting: deque[Handle] = deque()
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.counts: Counter[str] = Counter()
        """Finished requests by outcome and generated tokens. completed: EOS or max_new_tokens;
        stopped: cancelled early (stop string or client gone); failed: error or timeout."""

    def _count(self, handle: Handle) -> None:
        outcome = "failed" if handle.error else "completed" if handle.exhausted else "stopped"
        self.counts[outcome] += 1
        self.counts["tokens"] += len(handle.generated)

    def start(self) -> None:
        self._thread.start()

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called: new work is refused and running work is failed."""
        return self._stopped

    def submit(self, handle: Handle) -> Handle:
        handle.on_done(self._count)
        with self._wake:
            if self._stopped:
                raise LmfError("the server is shutting down")
            if len(self.waiting) >= self.max_queue:
                raise QueueFullError(
                    f"server busy: {len(self.waiting)} requests already waiting (limit {self.max_queue})",
                    retry_after_s=self.retry_after_s(),
                )
            self.waiting.append(handle)
            self._wake.notify()
        return handle

    def retry_after_s(self) -> int:
        return 1

    def call(self, fn: Callable[[], Any], timeout_s: float | None = 300) -> Any:
        """Run `fn` on the model thread between steps and return its result (or raise its error)."""
        future: Future[Any] = Future()
        with self._wake:
            if self._stopped:
                raise LmfError("the server is shutting down")
            self._calls.append((fn, future))
            self._wake.notify()
        return future.result(timeout=timeout_s)

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def _run_calls(self) -> None:
        while self._calls:
            fn, future = self._calls.popleft()
            try:
                future.set_result(fn())
            except Exception as exc:  # handed to the caller, never kills the loop
                future.set_exception(exc)

    def _next_waiting(self) -> Handle | None:
        with self._wake:
            return self.waiting.popleft() if self.waiting else None

    def _requeue(self, handle: Handle) -> None:  # back to the head: it waits for room
        with self._wake:
            self.waiting.appendleft(handle)

    def _idle_wait(self) -> bool:
        """Block until there is work; False when stopping."""
        with self._wake:
            while not self._stopped and not self.waiting and not self._calls and not self._busy():
                self._wake.wait(timeout=0.5)
            return not self._stopped

    def _busy(self) -> bool:
        return self.active() > 0

    def active(self) -> int:  # requests being decoded now
        return 0

    def _run(self) -> None:
        while self._idle_wait():
            self._run_calls()
            try:
                self.tick()
            except Exception as exc:  # a failed forward must fail its requests, not the server
                self.fail_active(exc)
        self._drain()

    def _drain(self) -> None:
        self.fail_active(LmfError("the server is shutting down"))
        while (handle := self._next_waiting()) is not None:
            handle.finish(LmfError("the server is shutting down"))
        while self._calls:
            self._calls.popleft()[1].set_exception(LmfError("the server is shutting down"))

    def tick(self) -> None:
        raise NotImplementedError

    def fail_active(self, error: Exception) -> None:
        raise NotImplementedError


class BatchScheduler(_Loop):
    """Continuous batching over a transformers causal LM (see module docstring)."""

    def __init__(
        self, model: Any, eos_ids: frozenset[int], *, max_batch: int = 16, max_queue: int = 64
    ) -> None:
        super().__init__(max_queue=max_queue, name="lmf-batch-scheduler")
        self.decoder = BatchedDecoder(model)
        self.eos_ids = eos_ids
        self.max_batch = max_batch
        self._generators: dict[Handle, Any] = {}

    @property
    def model(self) -> Any:
        return self.decoder.model

    @model.setter
    def model(self, value: Any) -> None:
        """Swap the model (adapters wrapped or unwrapped); only from `call()` so no batch is running."""
        self.decoder.model = value

    def active(self) -> int:
        return len(self.decoder)

    def retry_after_s(self) -> int:
        return max(1, len(self.waiting) // max(self.max_batch, 1))

    def tick(self) -> None:
        self._admit()
        self._drop_stopped()
        if len(self.decoder) == 0:
            return
        logits = self.decoder.step()
        finished: set[Handle] = set()
        failed: dict[Handle, Exception] = {}
        for row, row_logits in zip(self.decoder.rows, logits, strict=True):
            handle: Handle = row.key
            try:
                token = self._sample(handle, row_logits)
            except Exception as exc:  # this request's sampling failed: fail it alone
                failed[handle] = exc
                continue
            row.next_token = token
            if handle.emit(token, self.eos_ids):
                finished.add(handle)
        self._leave(finished)
        if failed:
            self.decoder.remove(set(failed))
            for handle, error in failed.items():
                self._generators.pop(handle, None)
                handle.finish(error)

    def _admit(self) -> None:
        """Prefill new arrivals one at a time (exact, unpadded) and merge them into the batch."""
        while len(self.decoder) < self.max_batch and (handle := self._next_waiting()) is not None:
            if handle.should_stop(time.perf_counter()):
                handle.finish()
                continue
            handle.started_at = time.perf_counter()
            if handle.params.max_new_tokens == 0:
                handle.exhausted = True
                handle.finish()
                continue
            try:
                logits, kv = self.decoder.prefill(handle.prompt_ids, handle.adapter)
                token = self._sample(handle, logits)
            except Exception as exc:  # not in the batch yet: fail_active would not see it
                self._generators.pop(handle, None)
                handle.finish(exc)
                continue
            if handle.emit(token, self.eos_ids):
                self._leave({handle}, in_batch=False)
            else:
                self.decoder.add(handle, kv, len(handle.prompt_ids), token, handle.adapter)

    def _sample(self, handle: Handle, logits: Any) -> int:
        if handle not in self._generators:
            params = handle.params
            self._generators[handle] = None if params.greedy else make_generator(params.seed)
        history = [*handle.prompt_ids, *handle.generated]
        if handle.grammar is not None:
            logits = handle.grammar.mask_logits(logits)
        token = sample_next(logits, handle.params, history, self._generators[handle])
        if handle.grammar is not None:
            handle.grammar.accept(token)
        return token

    def _drop_stopped(self) -> None:
        now = time.perf_counter()
        self._leave({row.key for row in self.decoder.rows if row.key.should_stop(now)})

    def _leave(self, handles: set[Handle], in_batch: bool = True) -> None:
        if not handles:
            return
        if in_batch:
            self.decoder.remove(handles)
        for handle in handles:
            self._generators.pop(handle, None)
            handle.finish()

    def fail_active(self, error: Exception) -> None:
        handles = [row.key for row in self.decoder.rows]
        self.decoder.remove(set(handles))
        for handle in handles:
            self._generators.pop(handle, None)
            handle.finish(error)


class SequentialScheduler(_Loop):
    """One request at a time through `backend.token_stream` (llama.cpp, or a naive baseline)."""

    def __init__(self, backend: Backend, *, max_queue: int = 64) -> None:
        super().__init__(max_queue=max_queue, name="lmf-sequential-scheduler")
        self.backend = backend
        self.current: Handle | None = None

    def active(self) -> int:
        return 1 if self.current else 0

    def tick(self) -> None:
        handle = self._next_waiting()
        if handle is None:
            return
        self.current = handle
        try:
            run_alone(self.backend, handle)
        finally:
            self.current = None

    def fail_active(self, error: Exception) -> None:
        if self.current is not None:
            self.current.finish(error)
            self.current = None


def run_alone(backend: Backend, handle: Handle) -> None:
    """Run one request to its end through `backend.token_stream`, checking cancellation and the
    deadline between tokens (sequential serving, and llama.cpp requests too long for a batch row)."""
    handle.started_at = time.perf_counter()
    if handle.should_stop(handle.started_at):
        handle.finish()
        return
    error: Exception | None = None
    stream = backend.token_stream(handle.prompt_ids, handle.params)
    try:
        for token in stream:
            if handle.should_stop(time.perf_counter()):
                break
            handle.push(token)
        else:
            handle.exhausted = True
    except Exception as exc:  # this request fails; the loop goes on
        error = exc
    finally:
        if close := getattr(stream, "close", None):
            close()
    handle.finish(error)
