"""Ollama's API under `/api` on the same app, scheduler, limits and API keys as the OpenAI routes.

Generation goes through the OpenAI handlers (ollama_format.py explains why): an Ollama request is
translated, the OpenAI stream it produces is read and written out as Ollama's newline-delimited
JSON (or added up into one object for `"stream": false`). Errors under `/api` take Ollama's shape,
`{"error": "..."}` with the HTTP status, whichever layer raised them (a middleware rewrites them).
`lmf serve --guardrails` applies to generate and chat as on `/v1` (ollama_guardrails.py). A rollout
assigns a variant to generations only: loading, `show` and the other routes check that a model
exists without routing it, so they neither get an `X-LMF-Variant` nor count in a variant's metrics.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at runtime.
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from lmfoundry.serve import handlers
from lmfoundry.serve import ollama_format as fmt
from lmfoundry.serve import ollama_models as models
from lmfoundry.serve.errors import bad_request, not_found
from lmfoundry.serve.guardrails import Guardrails
from lmfoundry.serve.middleware import ASGIApp, Receive, Scope, Send
from lmfoundry.serve.ollama_guardrails import check_request, filter_events
from lmfoundry.serve.ollama_schema import (
    IGNORED_OPTIONS,
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    OllamaOptions,
    ShowRequest,
)
from lmfoundry.serve.schema import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

if TYPE_CHECKING:
    from fastapi import FastAPI

PREFIX = "/api/"
SERVED = "generate, chat, embed, embeddings, tags, show, ps and version"


def add_ollama_routes(
    app: "FastAPI", state: handlers.ServerState, guardrails: Guardrails | None = None
) -> None:
    """Serve Ollama's API. Call it after the app's other middleware is added: the error middleware
    added here must wrap them all, so that 401 and 413 answers take Ollama's shape too."""
    app.add_middleware(OllamaErrorMiddleware)
    _add_generation_routes(app, state, guardrails)
    _add_embedding_routes(app, state)
    _add_model_routes(app, state)
    _add_fallback_routes(app)


def _limits(state: handlers.ServerState) -> fmt.Limits:
    options = state.options
    return fmt.Limits(options.max_tokens, options.default_max_tokens, state.served.runtime.context_length)


def _check_model(state: handlers.ServerState, model: str) -> None:
    """404 for a model this server does not serve. The served model itself is not resolved: with a
    rollout that would assign this request a variant and count it as one of its answers."""
    model_id = fmt.served_id(model, state.served.name)
    if model_id != state.served.name:
        handlers.resolve_model(state, model_id)


def _load(state: handlers.ServerState, body: GenerateRequest | ChatRequest, *, chat: bool) -> dict[str, Any]:
    """An empty prompt or conversation: Ollama's way to load a model. Ours is always loaded."""
    _check_model(state, body.model)
    if body.unloads():
        raise bad_request("unloading is not supported: `lmf serve` keeps its model loaded", "keep_alive")
    return fmt.loaded(body.model, chat=chat)


def _add_generation_routes(
    app: "FastAPI", state: handlers.ServerState, guardrails: Guardrails | None
) -> None:
    async def run(
        body: GenerateRequest | ChatRequest, req: ChatCompletionRequest | CompletionRequest, clock: fmt.Clock
    ) -> Any:
        """The translated request through the guardrails (when set) and the OpenAI handlers."""
        headers: dict[str, str] = {}
        if guardrails is not None:
            req, headers = check_request(guardrails, req)
        if isinstance(req, ChatCompletionRequest):
            events = await handlers.chat_completions(state, req)
        else:
            events = await handlers.completions(state, req)
        if guardrails is not None:
            events = filter_events(events, guardrails)
        return await _answer(body, events, clock, chat=isinstance(body, ChatRequest), headers=headers)

    @app.post("/api/generate")
    async def generate(body: GenerateRequest) -> Any:
        clock = fmt.Clock()
        if not body.prompt:
            return _load(state, body, chat=False)
        model_id = fmt.served_id(body.model, state.served.name)
        template = state.served.runtime.has_chat_template()
        return await run(
            body, fmt.generate_request(model_id, body, _limits(state), chat_template=template), clock
        )

    @app.post("/api/chat")
    async def chat(body: ChatRequest) -> Any:
        clock = fmt.Clock()
        if not body.messages:
            return _load(state, body, chat=True)
        return await run(
            body, fmt.chat_request(fmt.served_id(body.model, state.served.name), body, _limits(state)), clock
        )


async def _answer(
    body: GenerateRequest | ChatRequest, events: Any, clock: fmt.Clock, *, chat: bool, headers: dict[str, str]
) -> Any:
    """Stream the started generation (errors before the first token were raised: a plain HTTP
    error) as NDJSON, or collect it into one object."""
    from fastapi.responses import JSONResponse, StreamingResponse

    clock.mark("queued")  # the translated request always streams: an async iterator of SSE events
    if body.stream:
        lines = _ndjson(events, body.model, clock, chat=chat)
        return StreamingResponse(
            lines, media_type="application/x-ndjson", headers={"Cache-Control": "no-cache", **headers}
        )
    reply = fmt.Reply()
    try:
        async for event in events:
            if reply.read(event) or reply.calls:
                clock.mark("first")
    finally:
        await events.aclose()
    clock.mark("ended")
    if reply.error is not None:
        raise reply.failure()
    return JSONResponse(fmt.final(body.model, reply, clock, chat=chat, streamed=False), headers=headers)


async def _ndjson(events: Any, model: str, clock: fmt.Clock, *, chat: bool) -> AsyncIterator[str]:
    """Ollama's stream: a line per text piece, the tool calls, then the final line with the stats.
    An error after the headers went out is a last `{"error": ...}` line, as Ollama sends it."""
    reply = fmt.Reply()
    try:
        async for event in events:
            text = reply.read(event)
            if reply.error is not None:
                yield fmt.ndjson({"error": reply.failure().message})
                return
            if text or reply.calls:
                clock.mark("first")
            if text:
                yield fmt.ndjson(fmt.piece(model, text, chat=chat))
        clock.mark("ended")
        if reply.calls:
            yield fmt.ndjson(fmt.piece(model, "", chat=chat, calls=reply.tool_calls()))
        yield fmt.ndjson(fmt.final(model, reply, clock, chat=chat, streamed=True))
    finally:
        # closed at a `yield` (the client left), the OpenAI stream would otherwise wait for garbage
        # collection to cancel its generation
        await events.aclose()


def _add_embedding_routes(app: "FastAPI", state: handlers.ServerState) -> None:
    from anyio import to_thread

    def request(
        model: str, texts: list[str], options: OllamaOptions | None, dimensions: int | None = None
    ) -> EmbeddingRequest:
        """The /v1/embeddings request; options other than the harmless ones are a 400."""
        given = options.model_dump(exclude_none=True) if options else {}
        if applied := sorted(set(given) - IGNORED_OPTIONS):
            raise bad_request(f"options.{applied[0]} does not apply to embeddings", f"options.{applied[0]}")
        data = {"model": fmt.strip_latest(model), "input": texts, "dimensions": dimensions}
        return fmt.openai_request(EmbeddingRequest, data)  # type: ignore[no-any-return]

    @app.post("/api/embed")
    async def embed(body: EmbedRequest) -> dict[str, Any]:
        clock = fmt.Clock()
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        req = request(body.model, texts, body.options, body.dimensions)
        if not body.truncate and state.options.embedder:
            await to_thread.run_sync(_check_lengths, state, texts)
        clock.mark("queued")
        return fmt.embed_reply(body.model, await handlers.embeddings(state, req), clock)

    @app.post("/api/embeddings")
    async def embeddings(body: EmbeddingsRequest) -> dict[str, Any]:
        result = await handlers.embeddings(state, request(body.model, [body.prompt], body.options))
        return {"embedding": result["data"][0]["embedding"]}


def _check_lengths(state: handlers.ServerState, texts: list[str]) -> None:
    """`truncate: false`: an input longer than the embedder takes is a 400 instead of being cut."""
    embedder = state.embedder()
    limit = embedder.max_seq_length
    for i, ids in enumerate(embedder.tokenizer(texts)["input_ids"]):
        if limit and len(ids) > limit:
            raise bad_request(
                f"input {i} is {len(ids)} tokens, more than the embedder's {limit} (truncate=false)", "input"
            )


def _add_model_routes(app: "FastAPI", state: handlers.ServerState) -> None:
    from anyio import to_thread

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        return await to_thread.run_sync(models.tags, state)  # the first call counts the weights

    @app.get("/api/ps")
    async def ps() -> dict[str, Any]:
        return await to_thread.run_sync(models.running, state)

    @app.post("/api/show")
    async def show(body: ShowRequest) -> dict[str, Any]:
        name = body.model_name()
        embedder = state.options.embedder
        if embedder and fmt.strip_latest(name).lower() == embedder.lower():
            return models.show_embedder(state, name)
        _check_model(state, name)
        return await to_thread.run_sync(models.show, state, name)

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": models.OLLAMA_API_VERSION}


def _add_fallback_routes(app: "FastAPI") -> None:
    """`GET|HEAD /` (the `ollama` CLI's heartbeat) and a clear 404 for Ollama endpoints we lack
    (pull, push, create, copy, delete: models are managed with `lmf`)."""
    from fastapi import Request
    from fastapi.responses import PlainTextResponse

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def root() -> Any:
        return PlainTextResponse("Ollama is running")

    async def unsupported(request: Request, rest: str) -> Any:
        raise not_found(
            f"{request.method} {PREFIX}{rest} is not supported by this server (it serves {SERVED} "
            "under /api; models are managed with `lmf`)"
        )

    methods = ["GET", "POST", "PUT", "DELETE", "HEAD"]
    app.add_api_route(PREFIX + "{rest:path}", unsupported, methods=methods, include_in_schema=False)


class OllamaErrorMiddleware:
    """Error answers under /api in Ollama's shape, `{"error": "message"}`, with their status,
    whoever produced them (validation, API key, body limit, handlers). Other answers pass as sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def reshaping_send(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and int(message["status"]) >= 400:
                start = message  # held until the body is known
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = ollama_error(b"".join(chunks))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshaping_send)


def ollama_error(body: bytes) -> bytes:
    """An OpenAI error body as Ollama's (anything else unchanged)."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return body
    message = error.get("message") if isinstance(error, dict) else error
    return json.dumps({"error": str(message)}).encode()
