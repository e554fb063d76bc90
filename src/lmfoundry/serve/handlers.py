"""The OpenAI endpoints as plain async functions over a `ServerState` (app.py only wires routes).

Flow of a completion: resolve `model` ("base" or "base:adapter") -> sampling params within the
server's limits -> prompt token ids -> start `n` generations on the scheduler (one batch, so the
n choices decode together) -> collect them, or stream them as SSE chunks.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmfoundry.embed.sentence import load_embedder
from lmfoundry.errors import InvalidInputError, LmfError, ModelNotFoundError
from lmfoundry.prompts.apply import render_conversation, render_input
from lmfoundry.prompts.registry import PromptRef, resolve_prompt
from lmfoundry.serve import openai_format as fmt
from lmfoundry.serve.adapter_pool import (
    AdapterBusyError,
    AdapterForbiddenError,
    UnknownAdapterError,
    validate_name,
)
from lmfoundry.serve.chat_request import chat_constraint, chat_messages, chat_reply
from lmfoundry.serve.errors import (
    APIError,
    ConflictError,
    NotFoundError,
    bad_request,
    internal,
    not_found,
    rate_limited,
    timeout,
)
from lmfoundry.serve.logprobs import kept_tokens, logprobs_object, score
from lmfoundry.serve.scheduler import QueueFullError, RequestTimeoutError
from lmfoundry.serve.streaming import collect, merged
from lmfoundry.serve.tool_stream import ToolDeltas
from lmfoundry.types import SamplingParams

if TYPE_CHECKING:
    from lmfoundry.generate.engine import GenerationResult
    from lmfoundry.serve.metrics import ServerMetrics
    from lmfoundry.serve.schema import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
    from lmfoundry.serve.service import Generation, ServedModel, ServeOptions


GREEDY_BELOW = 1e-5
"""Temperatures below this decode greedily (as vLLM does)."""
MIN_TOP_P = 1e-6
"""Smaller top_p values keep only the most likely token anyway; they are raised to this."""


@dataclass
class ServerState:
    served: ServedModel
    options: ServeOptions
    metrics: ServerMetrics
    created: int = field(default_factory=fmt.now)
    capture: Any = None
    """Optional request/response recorder with `.record(endpoint, request, response, ...)`."""
    rollout: Any = None
    """The live `serve.rollout.Rollout` (variants for requests naming the served model), or None."""
    _embedder: Any = None
    _embedder_lock: threading.Lock = field(default_factory=threading.Lock)
    _templates: dict[str, PromptRef] = field(default_factory=dict)
    """Prompt templates resolved once per server (a bare NAME means its latest version at first use)."""

    def template(self, requested: str | None) -> PromptRef | None:
        """The request's prompt template, else the served profile's, else None."""
        spec = requested or self.served.loaded.prompt
        if spec is None:
            return None
        if spec not in self._templates:
            if spec.endswith((".yaml", ".yml")) and requested:
                raise bad_request(
                    "prompt_template names a registered or built-in template, not a file", "prompt_template"
                )
            try:
                self._templates[spec] = resolve_prompt(spec)
            except LmfError as exc:
                raise bad_request(f"prompt_template: {exc}", "prompt_template") from exc
        return self._templates[spec]

    def embedder(self) -> Any:
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = load_embedder(self.options.embedder)
            return self._embedder


def to_api_error(exc: BaseException, *, busy_status: int = 429) -> APIError:
    """Map library errors to OpenAI error objects (anything unexpected is a 500, never a crash)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, QueueFullError):
        return rate_limited(str(exc), exc.retry_after_s)
    if isinstance(exc, RequestTimeoutError):
        return timeout(str(exc))
    if isinstance(exc, UnknownAdapterError | ModelNotFoundError):
        return not_found(str(exc), "model", "model_not_found")
    if isinstance(exc, AdapterForbiddenError):
        return APIError(403, str(exc), type="permission_error", param="path", code="forbidden_path")
    if isinstance(exc, NotFoundError):
        return not_found(str(exc))
    if isinstance(exc, ConflictError):
        return APIError(409, str(exc), code=exc.code)
    if isinstance(exc, AdapterBusyError):
        if busy_status == 429:
            return rate_limited(str(exc), 1)
        return APIError(busy_status, str(exc), code="adapter_busy")
    if isinstance(exc, InvalidInputError | LmfError):
        return bad_request(str(exc))
    return internal(f"internal error: {type(exc).__name__}")


def resolve_model(state: ServerState, model: str) -> str | None:
    """The adapter a `model` field selects (None = the base model); 404 for anything unknown."""
    base = state.served.name
    if model == base:
        return state.rollout.route(state.served) if state.rollout is not None else None
    if model.startswith(base + ":"):
        adapter = model[len(base) + 1 :]
        validate_name(adapter)
        if state.served.adapters is None or adapter not in state.served.adapters.names():
            raise not_found(
                f"the model {model!r} does not exist (unknown adapter {adapter!r})",
                "model",
                "model_not_found",
            )
        return adapter
    raise not_found(
        f"the model {model!r} does not exist (this server serves {', '.join(state.served.model_ids())})",
        "model",
        "model_not_found",
    )


def sampling_params(state: ServerState, req: ChatCompletionRequest | CompletionRequest) -> SamplingParams:
    options = state.options
    limit = req.token_limit()
    if limit is None:
        limit = options.default_max_tokens
    if limit > options.max_tokens:
        raise bad_request(
            f"max_tokens={limit} exceeds this server's limit of {options.max_tokens}", "max_tokens"
        )
    if req.n > options.max_n:
        raise bad_request(f"n={req.n} exceeds this server's limit of {options.max_n}", "n")
    temperature = req.temperature
    if temperature is not None and temperature < GREEDY_BELOW:
        temperature = 0.0  # dividing logits by a denormal temperature overflows: it means greedy anyway
    # top_p below float32's range becomes 0 inside the sampler, which would mask every token
    top_p = max(req.top_p, MIN_TOP_P) if req.top_p is not None else None
    overrides = {
        "temperature": temperature,
        "top_p": top_p,
        "top_k": req.top_k,
        "min_p": req.min_p,
        "repetition_penalty": req.repetition_penalty,
        "seed": req.seed,
        "max_new_tokens": limit,
        "stop": tuple(req.stop_list()),
    }
    return state.served.loaded.defaults.replace(**overrides)


async def start_choices(
    state: ServerState, prompt_ids: list[int], params: SamplingParams, adapter: str | None, n: int
) -> list[Generation]:
    """Queue `n` generations (choice i samples with seed+i), all or none."""
    from anyio import to_thread

    def start_all() -> list[Generation]:
        started: list[Generation] = []
        try:
            for i in range(n):
                seed = params.seed + i if params.seed is not None else None
                started.append(
                    state.served.start(
                        prompt_ids, params.replace(seed=seed), adapter, state.options.timeout_s
                    )
                )
        except Exception:
            for generation in started:
                generation.cancel()
            raise
        return started

    return await to_thread.run_sync(start_all)  # may load an adapter: keep it off the event loop


def _observe(state: ServerState, generation: Generation, result: GenerationResult) -> None:
    state.metrics.observe_generation(
        state.served.name,
        generation.adapter,
        generation.handle,
        result.prompt_tokens,
        result.completion_tokens,
    )


async def _collect_all(state: ServerState, generations: list[Generation]) -> list[GenerationResult]:
    try:
        results = await asyncio.gather(*(collect(g) for g in generations))
    finally:
        for generation in generations:
            generation.cancel()
    for generation, result in zip(generations, results, strict=True):
        _observe(state, generation, result)
    return list(results)


def _text(result: GenerationResult) -> str:
    """The result text without a dangling U+FFFD (a UTF-8 character cut by the token limit), as streamed."""
    return result.text.rstrip("\ufffd")


async def chat_completions(
    state: ServerState, req: ChatCompletionRequest
) -> dict[str, Any] | AsyncIterator[str]:
    adapter = resolve_model(state, req.model)
    params = sampling_params(state, req)
    spec, constraint = chat_constraint(req)
    if constraint is not None:
        params = params.replace(constraint=constraint)
    messages = chat_messages(req)
    template = state.template(req.prompt_template)
    if template is not None:
        messages = render_conversation(template, messages)
        params = params.replace(stop=(*params.stop, *template.template.stop))
    prompt_ids = state.served.chat_prompt_ids(messages, spec)
    generations = await start_choices(state, prompt_ids, params, adapter, req.n)
    rid, created = fmt.new_id("chatcmpl"), fmt.now()
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return _stream(
            state,
            generations,
            rid,
            created,
            req.model,
            include_usage,
            chat=True,
            request=req,
            tools=spec is not None,
        )
    results = await _collect_all(state, generations)
    usage = fmt.usage(len(prompt_ids), sum(r.completion_tokens for r in results))
    choices = [chat_reply(_text(r), r.finish_reason, spec) for r in results]
    body = fmt.chat_completion(rid, req.model, created, choices, usage)
    _capture(state, "chat", req, body)
    return body


async def completions(state: ServerState, req: CompletionRequest) -> dict[str, Any] | AsyncIterator[str]:
    adapter = resolve_model(state, req.model)
    params = sampling_params(state, req)
    prompts = req.prompts()
    if len(prompts) > 1 and req.stream:
        raise bad_request("streaming supports a single prompt per request", "prompt")
    if len(prompts) * req.n > state.options.max_n:
        raise bad_request(
            f"prompts x n = {len(prompts) * req.n} exceeds this server's limit of {state.options.max_n}", "n"
        )
    prompts, params = _templated(state, req, prompts, params)
    all_ids = [state.served.prompt_ids(p) for p in prompts]
    generations: list[Generation] = []
    try:
        for ids in all_ids:
            generations += await start_choices(state, ids, params, adapter, req.n)
    except Exception:
        for generation in generations:
            generation.cancel()
        raise
    rid, created = fmt.new_id("cmpl"), fmt.now()
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return _stream(state, generations, rid, created, req.model, include_usage, chat=False, request=req)
    results = await _collect_all(state, generations)
    prompt_tokens = sum(len(ids) for ids in all_ids)
    usage = fmt.usage(prompt_tokens, sum(r.completion_tokens for r in results))
    texts, logprobs = [_text(r) for r in results], None
    if req.echo or req.logprobs is not None:
        from anyio import to_thread

        texts, logprobs = await to_thread.run_sync(
            _echo_and_logprobs, state, req, prompts, all_ids, results, generations
        )
    choices = [(text, r.finish_reason) for text, r in zip(texts, results, strict=True)]
    body = fmt.text_completion(rid, req.model, created, choices, usage, logprobs)
    _capture(state, "completions", req, body)
    return body


def _templated(
    state: ServerState, req: CompletionRequest, prompts: list[Any], params: SamplingParams
) -> tuple[list[Any], SamplingParams]:
    """Completion prompts put into the request's (or profile's) prompt template, with its stops."""
    template = state.template(req.prompt_template)
    if template is None:
        return prompts, params
    if not all(isinstance(p, str) for p in prompts):
        raise bad_request("prompt_template applies to text prompts, not token ids", "prompt_template")
    chat = state.served.loaded.has_chat_template()
    rendered = [render_input(template, p, chat=chat) for p in prompts]
    stops = dict.fromkeys((*params.stop, *(s for _, stop in rendered for s in stop)))
    return [prompt for prompt, _ in rendered], params.replace(stop=tuple(stops))


def _echo_and_logprobs(
    state: ServerState,
    req: CompletionRequest,
    prompts: list[str] | list[list[int]],
    all_ids: list[list[int]],
    results: list[GenerationResult],
    generations: list[Generation],
) -> tuple[list[str], list[dict[str, Any] | None] | None]:
    """Choice texts with the prompt echoed, and their OpenAI `logprobs` objects (blocking)."""

    decode = state.served.runtime.decode
    tokenizer = state.served.runtime.tokenizer
    raw = tokenizer.decode if tokenizer is not None else decode  # keeps special tokens visible
    texts: list[str] = []
    objects: list[dict[str, Any] | None] = []
    for i, result in enumerate(results):
        prompt, prompt_ids = prompts[i // req.n], all_ids[i // req.n]
        prompt_text = prompt if isinstance(prompt, str) else raw(prompt_ids)
        text = _text(result)
        texts.append(prompt_text + text if req.echo else text)
        if req.logprobs is None:
            continue
        generated = list(result.token_ids)
        if result.completion_tokens > len(generated):  # it ended with EOS: list it, as OpenAI does
            generated.append(generations[i].handle.generated[len(generated)])
        elif result.finish_reason == "stop":  # a stop string cut the text: drop the tokens after it
            generated = kept_tokens(decode, generated, text)
        ids = [*prompt_ids, *generated]
        scores = score(state.served, ids, generations[i].adapter, req.logprobs)
        first = 0 if req.echo else len(prompt_ids)
        objects.append(logprobs_object(raw, ids, scores, first, "" if req.echo else prompt_text))
    return texts, objects if req.logprobs is not None else None


@dataclass(frozen=True)
class _StreamFormat:
    """What every SSE chunk of one streamed response repeats: its id, model, creation time and kind."""

    rid: str
    model: str
    created: int
    chat: bool

    def choice_chunk(self, index: int, text: str | None, finish: str | None, first: bool = False) -> str:
        """One choice's chunk; `first` opens a chat choice with the assistant role and empty content."""
        if not self.chat:
            return fmt.sse(fmt.text_chunk(self.rid, self.model, self.created, index, text or "", finish))
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
        if text:
            delta["content"] = text
        return fmt.sse(fmt.chat_chunk(self.rid, self.model, self.created, index, delta, finish))

    def usage_chunk(self, usage: dict[str, int]) -> str:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return fmt.sse(fmt.usage_chunk(self.rid, self.model, self.created, obj, usage))

    def delta_chunk(self, index: int, delta: dict[str, Any]) -> str:
        return fmt.sse(fmt.chat_chunk(self.rid, self.model, self.created, index, delta, None))

    def full_body(
        self, texts: list[str] | list[dict[str, Any]], finishes: list[str], usage: dict[str, int]
    ) -> dict[str, Any]:
        """The non-streamed body the stream adds up to (what capture records)."""
        choices: list[Any] = list(zip(texts, finishes, strict=True))
        build = fmt.chat_completion if self.chat else fmt.text_completion
        return build(self.rid, self.model, self.created, choices, usage)


async def _stream(
    state: ServerState,
    generations: list[Generation],
    rid: str,
    created: int,
    model: str,
    include_usage: bool,
    *,
    chat: bool,
    request: Any,
    tools: bool = False,
) -> AsyncIterator[str]:
    """SSE chunks in the OpenAI format; an error after the headers went out becomes an error chunk."""
    form = _StreamFormat(rid, model, created, chat)
    calls = [ToolDeltas() for _ in generations] if tools else None
    texts = [""] * len(generations)
    pending = [""] * len(generations)
    finishes: list[str] = ["length"] * len(generations)
    completion_tokens = 0
    try:
        if chat:
            for i in range(len(generations)):
                yield form.choice_chunk(i, None, None, first=True)
        async for index, event in merged(generations):
            # Hold back trailing U+FFFD (bytes of a UTF-8 character not complete yet): the final
            # text drops a cut character, so the stream must never have sent it.
            held = pending[index] + event.delta
            ready = held.rstrip("\ufffd")
            pending[index] = held[len(ready) :]
            if ready and calls is not None:
                for delta in calls[index].feed(ready):
                    yield form.delta_chunk(index, delta)
            elif ready:
                texts[index] += ready
                yield form.choice_chunk(index, ready, None)
            if event.result is not None:
                finishes[index] = event.result.finish_reason
                if calls is not None:
                    owed, finishes[index] = calls[index].finish(event.result.finish_reason)
                    for delta in owed:
                        yield form.delta_chunk(index, delta)
                completion_tokens += event.result.completion_tokens
                _observe(state, generations[index], event.result)
                yield form.choice_chunk(index, None, finishes[index])
        if include_usage:
            yield form.usage_chunk(fmt.usage(len(generations[0].prompt_ids), completion_tokens))
    except Exception as exc:
        yield fmt.sse(to_api_error(exc).body())
    else:
        usage = fmt.usage(len(generations[0].prompt_ids), completion_tokens)
        replies = [c.message() for c in calls] if calls is not None else texts
        _capture(state, "chat" if chat else "completions", request, form.full_body(replies, finishes, usage))
    yield fmt.DONE


def _capture(state: ServerState, endpoint: str, request: Any, response: dict[str, Any]) -> None:
    rollout = state.rollout
    if rollout is not None and rollout.in_shadow():
        return  # a shadow answer is stored with its pair, never as served traffic
    if state.capture is not None:
        state.capture.record(endpoint, request.model_dump(exclude_none=True), response)
    if rollout is not None:
        rollout.after_response(state, endpoint, request, response)


def list_models(state: ServerState) -> dict[str, Any]:
    ids = state.served.model_ids()
    if state.options.embedder:
        ids.append(state.options.embedder)
    return {"object": "list", "data": [fmt.model_card(i, state.created) for i in ids]}


async def embeddings(state: ServerState, req: EmbeddingRequest) -> dict[str, Any]:
    from anyio import to_thread

    name = state.options.embedder
    if not name:
        raise not_found(
            "this server has no embedding model (start it with --embedder)", "model", "model_not_found"
        )
    if req.model.lower() != name.lower():
        raise not_found(
            f"the model {req.model!r} is not an embedding model here (use {name!r})",
            "model",
            "model_not_found",
        )
    texts = req.texts()
    if len(texts) > 2048:
        raise bad_request("at most 2048 inputs per request", "input")
    if any(not t for t in texts):
        raise bad_request("inputs must be non-empty strings", "input")
    return await to_thread.run_sync(_embed, state, texts, req.encoding_format, name)


def _embed(state: ServerState, texts: list[str], encoding: str, name: str) -> dict[str, Any]:
    import base64

    embedder = state.embedder()
    vectors = embedder.encode(texts)
    tokens = sum(len(ids) for ids in embedder.tokenizer(texts, truncation=True)["input_ids"])
    data = []
    for i, vector in enumerate(vectors):
        value: Any = (
            base64.b64encode(vector.astype("float32").tobytes()).decode()
            if encoding == "base64"
            else vector.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
