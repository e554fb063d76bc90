"""A served model: a `LoadedModel` for tokenizing, a scheduler that owns the forward passes, and
the adapter pool. Turns (prompt, sampling params, adapter) into a `Generation`.

Text handling (stop strings, UTF-8 hold-back, finish reasons, token counts) is the engine's
`TextStream`, fed by the scheduler's tokens, so served text is exactly what `lmf generate` prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.generate.batched import supports_batching
from lmfoundry.generate.engine import LoadedModel, load_model
from lmfoundry.generate.llamacpp_batched import supports_llama_batching
from lmfoundry.generate.text_stream import StreamEvent, TextStream
from lmfoundry.models.adapters import attach_lora, detach_lora
from lmfoundry.serve.adapter_pool import AdapterPool
from lmfoundry.serve.llama_scheduler import LlamaBatchScheduler
from lmfoundry.serve.scheduler import BatchScheduler, Handle, SequentialScheduler

if TYPE_CHECKING:
    from lmfoundry.generate.tools import ToolSpec
    from lmfoundry.types import Message, SamplingParams


@dataclass
class ServeOptions:
    """Server-side limits and scheduling knobs (the CLI flags of `lmf serve`)."""

    max_batch: int = 16
    """Rows decoded together (1 = one request at a time)."""
    max_queue: int = 64
    """Requests waiting beyond the running batch before the server answers 429."""
    max_tokens: int = 2048
    """Upper bound a request may ask for (max_tokens above it is a 400)."""
    default_max_tokens: int = 512
    """Chat completions without max_tokens generate at most this many."""
    max_n: int = 8
    """Upper bound on `n` (choices per request)."""
    timeout_s: float | None = 300.0
    """Per-request deadline; the request is stopped and answered 504 after it."""
    max_body_bytes: int = 1_000_000
    max_file_bytes: int = 64_000_000
    """Size limit of a `/v1/files` upload (batch input files are larger than requests)."""
    max_adapters: int = 8
    """LRU cap on adapters loaded at once."""
    adapter_roots: list[Path] = field(default_factory=list)
    embedder: str | None = "all-MiniLM-L6-v2"
    """Sentence-transformers embedder for /v1/embeddings (None disables the endpoint)."""
    row_context: int = 1024
    """llama.cpp batching: KV positions of one row (prompt + new tokens; each row holds this many
    cells). Longer requests wait for the batch to drain and run alone."""
    prefix_cache: int = 4
    """llama.cpp batching: finished sequences kept so prompts sharing their prefix skip it
    (each keeps one row's KV memory)."""


@dataclass
class Generation:
    """One running choice. Iterate `events()` once; `handle` has the timings."""

    model: ServedModel
    prompt_ids: list[int]
    params: SamplingParams
    handle: Handle
    adapter: str | None

    def text_stream(self) -> TextStream:
        """The text side of this choice: feed it the handle's tokens (see `serve.streaming`)."""
        runtime = self.model.runtime
        return TextStream(
            runtime.decode,
            runtime.eos_ids,
            self.params.stop,
            prompt_tokens=len(self.prompt_ids),
            backend=runtime.name,
            start=self.handle.submitted_at,
        )

    def events(self) -> Iterator[StreamEvent]:
        """The events, blocking on each token: for callers off the event loop (threads, tests)."""
        text = self.text_stream()
        try:
            yield from text.events(self.handle)
        finally:
            self.handle.cancel()  # a stop string matched or the consumer left: free the batch row
        yield text.final()

    def cancel(self) -> None:
        self.handle.cancel()


Scheduler = BatchScheduler | LlamaBatchScheduler | SequentialScheduler


def _transformers_scheduler(
    model: Any, eos_ids: frozenset[int], options: ServeOptions
) -> tuple[BatchScheduler, AdapterPool]:
    """Continuous batching on a transformers model, with adapters attached between steps."""
    batch = BatchScheduler(model, eos_ids, max_batch=options.max_batch, max_queue=options.max_queue)
    pool = AdapterPool(
        load_fn=lambda n, p: batch.call(lambda: setattr(batch, "model", attach_lora(batch.model, n, p))),
        unload_fn=lambda n: batch.call(lambda: setattr(batch, "model", detach_lora(batch.model, n))),
        roots=options.adapter_roots,
        max_loaded=options.max_adapters,
    )
    return batch, pool


def load_for_serving(
    model: str, *, backend: str = "auto", threads: int | None = None, adapters: bool = False
) -> LoadedModel:
    """Load `model` for a server. `auto` serves fp32 store and packaged models on llama.cpp over
    their float16 GGUF (continuous batching, several times faster than transformers on a CPU, same
    greedy text in 99.7% of positions) unless the server will serve LoRA adapters (`adapters`:
    `--adapter`, `--adapter-root`, a rollout), which only the transformers scheduler mixes per
    request; a `.gguf` or GGUF store entry is llama.cpp and adapters-in-a-profile are transformers
    either way."""
    return load_model(model, backend=backend, threads=threads, fast_gguf=not adapters)


def omp_wait_policy(backend: str, *, adapters: bool) -> str:
    """The OpenMP wait policy a server process should start with (set before torch or llama.cpp
    loads: the OpenMP runtime reads it once).

    ACTIVE (threads spin between operations, llama.cpp's own default) when the server will run on
    llama.cpp: at 16 clients, PASSIVE measured 164 vs 250 tokens/s and half the single-stream speed.
    PASSIVE for transformers: the scheduler thread's OpenMP team and the one torch made at load time
    spun against each other and made batched decoding ~20x slower on a loaded 2-core machine."""
    return "PASSIVE" if backend == "transformers" or adapters else "ACTIVE"


def _llama_batching(loaded: LoadedModel, options: ServeOptions) -> bool:
    return (
        loaded.backend == "llama_cpp"
        and options.max_batch > 1
        and supports_llama_batching(loaded.runtime.llm)  # type: ignore[attr-defined]
    )


class ServedModel:
    def __init__(
        self,
        name: str,
        loaded: LoadedModel,
        scheduler: Scheduler,
        adapters: AdapterPool | None,
    ) -> None:
        self.name = name
        self.loaded = loaded
        self.runtime = loaded.runtime
        self.scheduler = scheduler
        self.adapters = adapters

    @classmethod
    def create(
        cls,
        loaded: LoadedModel,
        *,
        name: str | None = None,
        options: ServeOptions | None = None,
        adapters: dict[str, str] | None = None,
        batching: bool = True,
    ) -> ServedModel:
        """Wrap a loaded model: batching scheduler + adapter pool for transformers, batching for
        llama.cpp (sequential with `max_batch=1`), sequential otherwise or with `batching=False`."""

        options = options or ServeOptions()
        runtime = loaded.runtime
        model = getattr(runtime, "model", None)
        scheduler: Scheduler
        pool: AdapterPool | None = None
        if batching and loaded.backend == "transformers" and model is not None and supports_batching(model):
            if hasattr(model, "peft_config"):  # adapters baked into a profile become part of the base
                model = model.merge_and_unload()
            scheduler, pool = _transformers_scheduler(model, runtime.eos_ids, options)
        elif adapters:
            raise LmfError("per-request adapters need the transformers backend (use --backend transformers)")
        elif batching and _llama_batching(loaded, options):
            scheduler = LlamaBatchScheduler(
                runtime,  # type: ignore[arg-type]  # a LlamaCppBackend (checked above)
                max_batch=options.max_batch,
                max_queue=options.max_queue,
                row_context=options.row_context,
                prefix_cache=options.prefix_cache,
            )
        else:
            scheduler = SequentialScheduler(runtime, max_queue=options.max_queue)
        scheduler.start()
        served = cls(name or loaded.name, loaded, scheduler, pool)
        try:
            for adapter_name, path in (adapters or {}).items():
                assert pool is not None
                pool.register(adapter_name, path, trusted=True, load=len(pool.loaded()) < pool.max_loaded)
        except Exception:
            served.close()
            raise
        return served

    def close(self) -> None:
        self.scheduler.stop()

    def model_ids(self) -> list[str]:
        adapters = self.adapters.names() if self.adapters else []
        return [self.name, *(f"{self.name}:{a}" for a in adapters)]

    def vocab_size(self) -> int:
        tokenizer = self.runtime.tokenizer
        if tokenizer is not None:
            return len(tokenizer)
        return int(self.runtime.llm.n_vocab())  # type: ignore[attr-defined]  # llama.cpp backend

    def prompt_ids(self, prompt: str | list[Message] | list[int]) -> list[int]:
        if isinstance(prompt, list) and not prompt:
            raise InvalidInputError("the prompt is empty (an empty token list or conversation)")
        if isinstance(prompt, list) and isinstance(prompt[0], int):
            ids = [int(t) for t in prompt]  # type: ignore[arg-type]
            vocab = self.vocab_size()
            if any(not 0 <= t < vocab for t in ids):
                raise InvalidInputError(f"prompt token ids must be in [0, {vocab})")
            return ids
        if isinstance(prompt, list) and not self.runtime.has_chat_template():
            raise InvalidInputError(f"model {self.name!r} has no chat template: use /v1/completions")
        return self.loaded.prompt_ids(prompt)  # type: ignore[arg-type]

    def chat_prompt_ids(self, messages: list[Message], tools: ToolSpec | None) -> list[int]:
        """A conversation's prompt ids, with its tools and earlier tool turns rendered."""
        if not self.runtime.has_chat_template():
            raise InvalidInputError(f"model {self.name!r} has no chat template: use /v1/completions")
        return self.loaded.tool_prompt_ids(messages, tools)

    def start(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None, timeout_s: float | None
    ) -> Generation:
        """Queue one generation (raises InvalidInputError, QueueFullError, adapter errors)."""
        if not prompt_ids:
            raise InvalidInputError("the prompt is empty (it encodes to zero tokens)")
        context = self.runtime.context_length
        if len(prompt_ids) >= context:
            raise InvalidInputError(f"prompt is {len(prompt_ids)} tokens but the context length is {context}")
        params = params.replace(max_new_tokens=min(params.max_new_tokens, context - len(prompt_ids)))
        if adapter is not None:
            if self.adapters is None:
                raise InvalidInputError(f"model {self.name!r} serves no adapters")
            self.adapters.acquire(adapter)
        grammar = self.runtime.constrain(params.constraint) if params.constraint else None  # 400 if bad
        handle = Handle(prompt_ids, params, adapter, timeout_s, grammar=grammar)
        if adapter is not None:
            pool = self.adapters
            assert pool is not None
            handle.on_done(lambda _h: pool.release(adapter))
        try:
            self.scheduler.submit(handle)
        except Exception:
            if adapter is not None and self.adapters is not None:
                self.adapters.release(adapter)
            raise
        return Generation(self, prompt_ids, params, handle, adapter)
