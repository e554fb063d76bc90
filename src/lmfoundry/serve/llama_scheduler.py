"""Continuous batching for the llama.cpp backend: the `BatchScheduler` contract (admit and prefill
new arrivals first, then one decode step over every active row; cancellation, timeouts and stop
strings between steps; a bounded queue; `call()` between steps) on `LlamaBatchedDecoder`.

Why a second scheduler rather than a second decoder behind `BatchScheduler`: llama.cpp keeps the
KV cache inside its context and samples from its own logits buffer by output index, so prefill,
sampling and leaving differ in shape from the torch path; the loop, queue and `Handle` are shared.

Each row samples with llama.cpp's sampler chain built from its request's parameters
(`RowSampler`), after masking its logits with the request's grammar, so a request gets the same
tokens batched as from `LlamaCppBackend.token_stream` alone (greedy, and seeded sampling).

Requests whose prompt plus `max_new_tokens` exceed a row's KV positions (`row_context`) wait until
the batch is empty and then run alone on the backend's own context (`run_alone`). llama.cpp applies
LoRA per context: the one GGUF adapter the backend was loaded with applies to every row.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lmfoundry.generate.llamacpp_batched import MIN_REUSE, LlamaBatchedDecoder, common_prefix
from lmfoundry.generate.llamacpp_sampling import RowSampler
from lmfoundry.serve.scheduler import Handle, _Loop, run_alone

if TYPE_CHECKING:
    import numpy as np

    from lmfoundry.generate.llamacpp_backend import LlamaCppBackend


class LlamaBatchScheduler(_Loop):
    """Continuous batching over a `LlamaCppBackend` (see module docstring)."""

    def __init__(
        self,
        backend: LlamaCppBackend,
        *,
        max_batch: int = 16,
        max_queue: int = 64,
        row_context: int = 1024,
        prefix_cache: int = 0,
    ) -> None:
        super().__init__(max_queue=max_queue, name="lmf-llama-batch-scheduler")
        self.backend = backend
        self.max_batch = max_batch
        self.decoder = LlamaBatchedDecoder(
            backend.llm,
            max_rows=max_batch,
            row_context=min(row_context, backend.context_length),
            prefix_cache=prefix_cache,
        )
        self.eos_ids = backend.eos_ids
        self._samplers: dict[Handle, RowSampler] = {}
        self.alone = 0
        """Requests that ran alone because they did not fit a batch row."""

    def active(self) -> int:
        return len(self.decoder)

    def retry_after_s(self) -> int:
        return max(1, len(self.waiting) // max(self.max_batch, 1))

    def stop(self) -> None:
        super().stop()
        if not self._thread.is_alive():  # never free the context under a running decode
            self.decoder.close()

    def tick(self) -> None:
        self._admit()
        self._drop_stopped()
        if not self.decoder.rows:
            return
        logits = self.decoder.step()
        finished: list[Handle] = []
        failed: dict[Handle, Exception] = {}
        for index, row in enumerate(self.decoder.rows):  # row i is llama.cpp output i
            handle: Handle = row.key
            try:
                row.next_token = self._sample(handle, logits[index], index)
            except Exception as exc:  # this request's sampling or grammar failed: fail it alone
                failed[handle] = exc
                continue
            if handle.emit(row.next_token, self.eos_ids):
                finished.append(handle)
        self._leave(finished)
        for handle, error in failed.items():
            self._leave([handle], error)

    def _admit(self) -> None:
        """Prefill new arrivals while rows are free: those that fit one batch together in one
        `llama_decode` (`prefill_group`), a prompt longer than a batch alone, in chunks. A prompt
        that shares a prefix with one in the group waits for the next group, so it copies the
        computed prefix instead of computing it again."""
        while self._admit_group():
            pass

    def _admit_group(self) -> bool:
        """Admit one group; True when it prefilled one (more may fit)."""
        group: list[Handle] = []
        budget = self.decoder.n_batch
        while len(self.decoder) + len(group) < self.max_batch and (handle := self._next_waiting()):
            params = handle.params
            if handle.should_stop(time.perf_counter()) or params.max_new_tokens == 0:
                handle.exhausted = params.max_new_tokens == 0 and not handle.cancelled
                handle.finish()
                continue
            if len(handle.prompt_ids) + params.max_new_tokens > self.decoder.row_context:
                if self.decoder.rows or group:  # wait at the head of the queue for the batch to drain
                    self._requeue(handle)
                    break
                self.alone += 1
                run_alone(self.backend, handle)
                continue
            if len(handle.prompt_ids) > budget:
                if group:  # the next tick's group
                    self._requeue(handle)
                    break
                self._prefill([handle], chunked=True)
                continue
            if self.decoder.prefix_cache and any(self._shares_prefix(handle, other) for other in group):
                self._requeue(handle)
                break
            group.append(handle)
            budget -= len(handle.prompt_ids)
        if group:
            self._prefill(group, chunked=False)
        return bool(group)

    @staticmethod
    def _shares_prefix(handle: Handle, other: Handle) -> bool:
        ids = handle.prompt_ids
        return common_prefix(other.prompt_ids, ids, len(ids) - 1) >= MIN_REUSE

    def _prefill(self, handles: list[Handle], *, chunked: bool) -> None:
        """Prefill `handles` (one long prompt in chunks, or a group in one pass) and emit each
        request's first token; a request whose grammar or prefill fails is failed alone."""
        ready: list[Handle] = []
        for handle in handles:
            handle.started_at = time.perf_counter()
            try:
                if handle.grammar is None and handle.params.constraint is not None:
                    handle.grammar = self.backend.constrain(handle.params.constraint)
                ready.append(handle)
            except Exception as exc:
                self._leave([handle], exc)
        if not ready:
            return
        try:
            if chunked:
                logits, indices = self.decoder.prefill(ready[0], ready[0].prompt_ids)[None, :], [-1]
            else:
                logits, indices = self.decoder.prefill_group([(h, h.prompt_ids) for h in ready])
        except Exception as exc:  # the rows were not added: fail these requests
            for handle in ready:
                handle.finish(exc)
            return
        rows = {row.key: row for row in self.decoder.rows}
        for index, handle in enumerate(ready):
            try:
                token = self._sample(handle, logits[index], indices[index])
            except Exception as exc:
                self._leave([handle], exc)
                continue
            rows[handle].next_token = token
            if handle.emit(token, self.eos_ids):
                self._leave([handle])

    def _sample(self, handle: Handle, scores: np.ndarray, index: int) -> int:
        sampler = self._samplers.get(handle)
        if sampler is None:
            sampler = self._samplers[handle] = RowSampler(handle.params, self.decoder.n_vocab)
        grammar = handle.grammar  # masked in place: llama.cpp's samplers read this buffer
        if grammar is not None:
            scores[:] = grammar.mask_scores(scores)
        token = sampler.sample(self.decoder.ctx, index, scores)
        if grammar is not None:
            grammar.accept(token)
        return token

    def _drop_stopped(self) -> None:
        now = time.perf_counter()
        self._leave([row.key for row in self.decoder.rows if row.key.should_stop(now)])

    def _leave(self, handles: Iterable[Handle], error: Exception | None = None) -> None:
        handles = list(handles)
        if not handles:
            return
        self.decoder.remove(set(handles))
        for handle in handles:
            sampler = self._samplers.pop(handle, None)
            if sampler is not None:
                sampler.close()
            handle.finish(error)

    def fail_active(self, error: Exception) -> None:
        self._leave([row.key for row in self.decoder.rows], error)

    def stats(self) -> dict[str, Any]:
        """Counters for tests and debugging: prefix tokens reused, requests run alone."""
        return {"reused_tokens": self.decoder.reused_tokens, "alone": self.alone}
