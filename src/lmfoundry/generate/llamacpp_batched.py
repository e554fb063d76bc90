"""Continuous batching on llama.cpp: prefill one sequence, then decode every active sequence together
in one `llama_decode`, one token per row per step, with rows joining and leaving between steps.

Why: a decode step over 16 rows costs little more than over one on a CPU (the quantized weights are
read once per step), so serving many clients at once multiplies throughput, as llama.cpp's own
`llama-server -np N` does. `Llama` (llama-cpp-python's high-level object) drives one sequence in one
context; this module opens a second context on the same loaded model with `n_seq_max` sequences,
each in its own KV stream of `row_context` cells (`kv_unified` off). Why not one unified pool: with
llama.cpp 0.3.36 a sequence whose cells do not start on a 32-cell boundary of a unified cache gets
logits up to ~0.5 away from the same sequence decoded alone, which changes greedy outputs; in its
own stream every row's cells sit exactly where they sit in a one-sequence context, so a request
decodes to the same tokens batched as alone.

Each row owns one llama.cpp sequence id (= one stream); leaving clears it (`llama_memory_seq_rm`)
and the id returns to the pool. With a prefix cache, a finished row's sequence is kept instead, and
a new prompt that starts with the same tokens takes it over (or copies a running row's stream with
`llama_memory_seq_cp`), drops the tail and computes only the rest of its prompt.

This module knows token ids and logits only; sampling, stop strings and queues belong to callers.
The logits it returns are views into llama.cpp's buffer, valid until the next decode.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import LmfError

if TYPE_CHECKING:
    import numpy as np


@dataclass
class SeqRow:
    key: Any
    """The caller's handle for this sequence (any hashable)."""
    seq_id: int
    tokens: list[int] = field(default_factory=list)
    """The tokens whose keys and values are in the cache, in position order."""
    next_token: int = -1
    """The sampled token not yet fed to the model."""


MIN_REUSE = 16
"""Shorter shared prefixes are recomputed: copying a running row's stream costs a buffer copy."""


def supports_llama_batching(llm: Any) -> bool:
    """True for decoder-only attention models (recurrent / hybrid memories keep one state per
    sequence that cannot share prefixes; encoder-decoder models decode differently)."""
    import llama_cpp

    model = llm.model
    return not (
        llama_cpp.llama_model_is_recurrent(model)
        or llama_cpp.llama_model_is_hybrid(model)
        or llama_cpp.llama_model_has_encoder(model)
    )


class LlamaBatchedDecoder:
    """Owns a multi-sequence llama.cpp context on `llm`'s model. Not thread-safe: one scheduler
    thread uses it. `close()` frees the context (the model stays with `llm`)."""

    def __init__(
        self,
        llm: Any,
        *,
        max_rows: int,
        row_context: int,
        n_batch: int = 512,
        prefix_cache: int = 0,
        scoring: bool = True,
    ) -> None:
        from llama_cpp import _internals

        self.llm = llm
        self.max_rows = max_rows
        self.n_batch = min(n_batch, row_context)
        self.n_vocab = int(llm.n_vocab())
        self.rows: list[SeqRow] = []
        self.prefix_cache = prefix_cache
        """How many finished sequences to keep for prefix reuse (0 = none)."""
        self.cached: OrderedDict[int, list[int]] = OrderedDict()
        """seq id -> tokens of a finished sequence kept for its prefix, oldest first."""
        if prefix_cache and not scoring:
            raise LmfError("a prefix cache needs the scoring sequence (its scratch space for swaps)")
        n_seq = max_rows + prefix_cache + int(scoring)
        self._score_id = n_seq - 1 if scoring else -1
        """A sequence kept free for `score` (teacher-forced log-probabilities between steps) and as
        scratch space for `_swap`; -1 without `scoring` (then rows never swap with prefixes)."""
        self._free_ids = list(range(max_rows + prefix_cache))
        params = _context_params(llm, n_seq, row_context, self.n_batch)
        self.ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self.row_context = int(self.ctx.n_ctx()) // n_seq
        """KV positions of one row (llama.cpp rounds it up to a multiple of 256)."""
        self._batch = _internals.LlamaBatch(n_tokens=max(self.n_batch, max_rows), embd=0, n_seq_max=1)
        _copy_lora(llm, self.ctx.ctx)
        self.reused_tokens = 0
        """Prompt tokens taken from the prefix cache instead of computed (for stats and tests)."""

    def __len__(self) -> int:
        return len(self.rows)

    def close(self) -> None:
        self._batch.close()
        self.ctx.close()

    def can_admit(self) -> bool:
        """True when a new row fits now (evicting the oldest cached prefix if every id is taken)."""
        if len(self.rows) >= self.max_rows:
            return False
        if not self._free_ids and self.cached:
            self._release(self.cached.popitem(last=False)[0])
        return bool(self._free_ids)

    def _pop_free(self) -> int:
        if not self._free_ids and self.cached:  # every id taken: drop the oldest kept prefix
            self._release(self.cached.popitem(last=False)[0])
        lowest = min(self._free_ids)  # low ids keep the running rows contiguous (see `_compact`)
        self._free_ids.remove(lowest)
        return lowest

    def _release(self, seq_id: int) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self.ctx.memory, seq_id, -1, -1)
        self._free_ids.append(seq_id)

    def prefill(self, key: Any, prompt_ids: list[int]) -> np.ndarray:
        """Add a row for `prompt_ids` (call `can_admit()` first); return its next-token logits
        [vocab] (a view; llama.cpp output index -1)."""
        if not 0 < len(prompt_ids) < self.row_context:
            raise LmfError(f"a batched row holds 1 to {self.row_context - 1} prompt tokens")
        seq_id, start = self._take_seq(prompt_ids)
        try:
            for begin in range(start, len(prompt_ids), self.n_batch):
                chunk = prompt_ids[begin : begin + self.n_batch]
                self._batch.reset()
                for offset, token in enumerate(chunk):
                    last = begin + offset == len(prompt_ids) - 1
                    self._add(token, begin + offset, seq_id, logits=last)
                self._decode()
        except Exception:
            self._release(seq_id)
            raise
        self.rows.append(SeqRow(key, seq_id, list(prompt_ids)))
        return self._logits(1)[0]

    def prefill_group(self, items: list[tuple[Any, list[int]]]) -> tuple[np.ndarray, list[int]]:
        """Add a row per (key, prompt) in one `llama_decode` (the rows must fit `max_rows` and the
        prompts together `n_batch` tokens); return their next-token logits [len(items), vocab] in
        the order given (a view), and the batch index of each item's last token (what llama.cpp's
        samplers take to find those logits).

        Why: prompts arriving together are computed in one pass instead of one pass each, as
        llama-server does; llama.cpp splits the batch by sequence into equal-length micro-batches,
        so several prompts share each pass over the weights (TTFT of a burst of requests)."""
        taken: list[tuple[Any, list[int], int, int]] = []
        try:
            if len(self.rows) + len(items) > self.max_rows:
                raise LmfError(f"a prefill group must fit the {self.max_rows - len(self.rows)} free rows")
            if sum(len(ids) for _, ids in items) > self.n_batch:
                raise LmfError(f"a prefill group holds at most {self.n_batch} prompt tokens")
            for key, prompt_ids in items:
                if not 0 < len(prompt_ids) < self.row_context:
                    raise LmfError(f"a batched row holds 1 to {self.row_context - 1} prompt tokens")
                seq_id, start = self._take_seq(prompt_ids)
                taken.append((key, prompt_ids, seq_id, start))
            self._batch.reset()
            last_indices = []
            for _, prompt_ids, seq_id, start in taken:  # in the order given: output i is item i
                for position in range(start, len(prompt_ids)):
                    self._add(prompt_ids[position], position, seq_id, logits=position == len(prompt_ids) - 1)
                last_indices.append(self._batch.batch.n_tokens - 1)
            self._decode()
        except Exception:
            for _, _, seq_id, _ in taken:
                self._release(seq_id)
            raise
        self.rows += [SeqRow(key, seq_id, list(ids)) for key, ids, seq_id, _ in taken]
        return self._logits(len(taken)), last_indices

    def _take_seq(self, prompt_ids: list[int]) -> tuple[int, int]:
        """A sequence id for a new row and how many prompt tokens its cache already holds: the
        longest prefix (at most len - 1: the last prompt token is computed, for its logits) of a
        cached sequence (taken over) or of a running row (its stream copied); else a free id."""
        import llama_cpp

        best_id, best = -1, MIN_REUSE - 1
        if self.prefix_cache:
            sources = [(r.seq_id, r.tokens) for r in self.rows] + list(self.cached.items())
            for source_id, tokens in sources:
                n = common_prefix(tokens, prompt_ids, len(prompt_ids) - 1)
                if n > best:
                    best_id, best = source_id, n
        memory = self.ctx.memory
        if best_id < 0:
            return self._pop_free(), 0
        if best_id in self.cached:
            del self.cached[best_id]
            seq_id = best_id
        else:
            seq_id = self._pop_free()
            llama_cpp.llama_memory_seq_cp(memory, best_id, seq_id, -1, -1)
        llama_cpp.llama_memory_seq_rm(memory, seq_id, best, -1)
        self.reused_tokens += best
        return seq_id, best

    def step(self) -> np.ndarray:
        """Feed every row its pending token; return next-token logits [rows, vocab] in row order
        (row i is llama.cpp output index i; rows are reordered by sequence id first)."""
        if not self.rows:
            raise LmfError("no rows to decode")
        if any(len(r.tokens) >= self.row_context for r in self.rows):
            raise LmfError(f"a batched row ran past its {self.row_context} KV positions")
        self._compact()
        self._batch.reset()
        for row in self.rows:
            self._add(row.next_token, len(row.tokens), row.seq_id, logits=True)
        self._decode()
        for row in self.rows:
            row.tokens.append(row.next_token)
        return self._logits(len(self.rows))

    def score(self, ids: list[int]) -> np.ndarray:
        """Logits after every token of `ids` ([len(ids), vocab], a copy): a teacher-forced pass on
        the scoring sequence, which is cleared again (rows in the batch are untouched)."""
        import llama_cpp
        import numpy as np

        if self._score_id < 0:
            raise LmfError("this decoder keeps no scoring sequence (scoring=False)")
        if not 0 < len(ids) <= self.row_context:
            raise LmfError(
                f"scoring holds 1 to {self.row_context} tokens per sequence, got {len(ids)} "
                "(raise the server's --row-context)"
            )
        parts = []
        try:
            for begin in range(0, len(ids), self.n_batch):
                chunk = ids[begin : begin + self.n_batch]
                self._batch.reset()
                for offset, token in enumerate(chunk):
                    self._add(token, begin + offset, self._score_id, logits=True)
                self._decode()
                parts.append(np.array(self._logits(len(chunk))))
        finally:
            llama_cpp.llama_memory_seq_rm(self.ctx.memory, self._score_id, -1, -1)
        return np.concatenate(parts)

    def _compact(self) -> None:
        """Give the running rows sequence ids 0..n-1, in row order.

        Why: with one KV stream per sequence, llama.cpp splits a batch into one micro-batch per run
        of consecutive, increasing sequence ids (`split_equal`), each a full pass over the weights:
        16 rows in shuffled id order measured 3x slower per step than the same rows in order. Moving
        a row costs one copy of its stream (a swap with a cached prefix, three), once per gap."""
        n = len(self.rows)
        movers = [row for row in self.rows if row.seq_id >= n]
        if movers:
            held = {row.seq_id for row in self.rows}
            holes = [i for i in range(n) if i not in held]
            for hole, row in zip(holes, movers, strict=True):
                if hole in self.cached:  # a kept prefix sits in the hole: swap it with the row
                    self._swap(hole, row.seq_id)
                    self.cached[row.seq_id] = self.cached.pop(hole)
                else:
                    self._free_ids.remove(hole)
                    self._move(row.seq_id, hole)
                    self._free_ids.append(row.seq_id)
                row.seq_id = hole
        self.rows.sort(key=lambda row: row.seq_id)

    def _move(self, source: int, target: int) -> None:
        """Copy sequence `source`'s stream to `target` and clear `source` (llama.cpp copies the
        data before its next decode, in the order asked)."""
        import llama_cpp

        llama_cpp.llama_memory_seq_cp(self.ctx.memory, source, target, -1, -1)
        llama_cpp.llama_memory_seq_rm(self.ctx.memory, source, -1, -1)

    def _swap(self, a: int, b: int) -> None:
        self._move(a, self._score_id)  # the scoring sequence is free between steps
        self._move(b, a)
        self._move(self._score_id, b)

    def feed(self, tokens: list[int]) -> np.ndarray:
        """Feed several tokens to the only row (verifying a speculative draft): their logits
        [len(tokens), vocab] (a copy); `rewind` drops the ones rejected."""
        import numpy as np

        (row,) = self.rows
        if len(row.tokens) + len(tokens) > self.row_context:
            raise LmfError(f"a batched row ran past its {self.row_context} KV positions")
        self._batch.reset()
        for offset, token in enumerate(tokens):
            self._add(token, len(row.tokens) + offset, row.seq_id, logits=True)
        self._decode()
        row.tokens.extend(tokens)
        return np.array(self._logits(len(tokens)))

    def rewind(self, length: int) -> None:
        """Keep the first `length` tokens of the only row (its KV after them is dropped)."""
        import llama_cpp

        (row,) = self.rows
        llama_cpp.llama_memory_seq_rm(self.ctx.memory, row.seq_id, length, -1)
        del row.tokens[length:]

    def remove(self, keys: set[Any]) -> None:
        """Drop finished or cancelled rows; keep their sequences as prefixes if caching."""
        for row in [r for r in self.rows if r.key in keys]:
            self.rows.remove(row)
            if not self.prefix_cache:
                self._release(row.seq_id)
                continue
            self.cached[row.seq_id] = row.tokens
            if len(self.cached) > self.prefix_cache:
                self._release(self.cached.popitem(last=False)[0])

    # -- llama.cpp calls
    def _add(self, token: int, pos: int, seq_id: int, *, logits: bool) -> None:
        batch = self._batch.batch
        i = batch.n_tokens
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq_id
        batch.logits[i] = logits
        batch.n_tokens = i + 1

    def _decode(self) -> None:
        import llama_cpp

        code = llama_cpp.llama_decode(self.ctx.ctx, self._batch.batch)
        if code == 1:
            raise LmfError("llama.cpp found no free KV cells for this batch")
        if code != 0:
            raise LmfError(f"llama_decode failed with code {code}")

    def _logits(self, rows: int) -> np.ndarray:
        import llama_cpp
        import numpy as np

        pointer = llama_cpp.llama_get_logits(self.ctx.ctx)
        return np.ctypeslib.as_array(pointer, shape=(rows, self.n_vocab))


def common_prefix(a: list[int], b: list[int], limit: int) -> int:
    """How many leading tokens `a` and `b[:limit]` share."""
    n = 0
    for x, y in zip(a, b[:limit], strict=False):
        if x != y:
            break
        n += 1
    return n


def _context_params(llm: Any, n_seq: int, row_context: int, n_batch: int) -> Any:
    """`llm`'s own context settings (threads, RoPE, KV types), with `n_seq` sequences of
    `row_context` cells each, one KV stream per sequence."""
    params = type(llm.context_params).from_buffer_copy(llm.context_params)
    params.n_ctx = row_context * n_seq
    params.n_batch = params.n_ubatch = n_batch
    params.n_seq_max = n_seq
    params.kv_unified = False
    params.no_perf = True
    return params


def _copy_lora(llm: Any, ctx: Any) -> None:
    """Apply the adapter `llm` was loaded with to the new context too: llama.cpp sets LoRA per
    context, so every row of this context decodes with it."""
    import ctypes

    import llama_cpp

    adapter = getattr(llm, "_lora_adapter", None)
    if adapter is None:
        return
    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
    scales = (ctypes.c_float * 1)(llm.lora_scale)
    if llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales):
        raise LmfError("llama.cpp could not apply the LoRA adapter to the batch context")
