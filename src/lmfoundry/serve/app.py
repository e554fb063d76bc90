"""`create_app()`: the FastAPI application of `lmf serve`, importable and testable in-process.

    from lmfoundry.serve.app import create_app
    from lmfoundry.serve.service import ServedModel, ServeOptions
    served = ServedModel.create(lmfoundry.load("smollm2-135m-instruct", backend="transformers"))
    app = create_app(served, ServeOptions(), api_keys=["sk-local"])

Every error, whether from validation, auth, limits or a bug, is answered with the OpenAI error object,
except under `/api/` (the Ollama-compatible routes), where it is Ollama's `{"error": "..."}`.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime, and
# the request models are imported inside create_app (fastapi and pydantic models stay lazy).
import logging
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import LmfError
from lmfoundry.plugins import require
from lmfoundry.serve import handlers
from lmfoundry.serve.batches import BatchService
from lmfoundry.serve.capture import UnknownExchangeError
from lmfoundry.serve.errors import APIError, from_validation_errors, not_found
from lmfoundry.serve.guardrail_middleware import GuardrailMiddleware
from lmfoundry.serve.metrics import ServerMetrics
from lmfoundry.serve.middleware import APIKeyMiddleware, BodyLimitMiddleware, CountingMiddleware
from lmfoundry.serve.ollama_routes import add_ollama_routes
from lmfoundry.serve.rollout_routes import install_rollout
from lmfoundry.serve.schema import (
    AdapterRequest,
    BatchCreateRequest,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    FeedbackRequest,
)
from lmfoundry.serve.service import ServeOptions
from lmfoundry.serve.stats import summarise
from lmfoundry.serve.tracing import add_tracing
from lmfoundry.studio.api import mount_studio
from lmfoundry.studio.config import StudioConfig

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi import FastAPI

    from lmfoundry.serve.batches import BatchService
    from lmfoundry.serve.files import FileStore
    from lmfoundry.serve.guardrails import Guardrails
    from lmfoundry.serve.rollout_spec import RolloutSpec
    from lmfoundry.serve.service import ServedModel

log = logging.getLogger("lmfoundry.serve")


def create_app(
    served: "ServedModel",
    options: "ServeOptions | None" = None,
    *,
    api_keys: list[str] | None = None,
    capture: Any = None,
    close_on_shutdown: bool = False,
    batch_dir: "str | Path | None" = None,
    rollout: "RolloutSpec | None" = None,
    canary_judge: Any = None,
    tracer_provider: Any = None,
    studio: StudioConfig | None = None,
    guardrails: "Guardrails | None" = None,
) -> "FastAPI":
    """Build the app around a served model. `close_on_shutdown` stops its scheduler with the app.

    With `batch_dir`, `/v1/files` and `/v1/batches` are served and a background worker runs batch
    jobs while the app runs (resuming unfinished ones found in that directory). `rollout` splits the
    served model's requests between variants (serve/rollout.py; `canary_judge(input, answer) -> score`
    is its judge hook); `tracer_provider` (an OpenTelemetry SDK provider) traces every request.
    The studio web UI is mounted at `/ui` (`studio=StudioConfig(enabled=False)` leaves it out).
    `guardrails` (serve/guardrails.py) checks the completion endpoints' requests and replies
    (`/v1` and Ollama's `/api/generate`, `/api/chat`)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    options = options or ServeOptions()
    scheduler = served.scheduler
    metrics = ServerMetrics(queue_depth=lambda: len(scheduler.waiting), active=lambda: scheduler.active())
    state = handlers.ServerState(served, options, metrics, capture=capture)
    batches = _batch_service(batch_dir, state)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        if batches is not None:
            batches.start()
        yield
        if batches is not None:
            await batches.stop()  # before the scheduler stops, so no request fails on the way out
        if close_on_shutdown:
            served.close()

    app = FastAPI(
        title="lmfoundry OpenAI-compatible server",
        version="1",
        lifespan=lifespan,
        description="Chat and text completions, embeddings, per-request LoRA adapters, Prometheus metrics.",
    )
    app.state.lmf = state
    app.state.lmf_batches = batches
    _install_error_handlers(app)
    _add_openai_routes(app, state)
    _add_admin_routes(app, state)
    _add_batch_routes(app, batches)
    mount_studio(app, studio or StudioConfig(), lambda: _live_stats(state))
    install_rollout(app, state, rollout, mutable=bool(api_keys), judge=canary_judge)
    if guardrails is not None:  # inside the key check and body limit: sees only accepted requests
        app.add_middleware(GuardrailMiddleware, guardrails=guardrails)
    app.add_middleware(
        BodyLimitMiddleware, limit=options.max_body_bytes, path_limits={"/v1/files": options.max_file_bytes}
    )
    app.add_middleware(APIKeyMiddleware, keys=list(api_keys or []))
    app.add_middleware(CountingMiddleware, count=metrics.count)
    add_ollama_routes(app, state, guardrails)  # last: its error middleware wraps the others (docs/deploy.md)
    add_tracing(app, tracer_provider)  # outermost: a span times everything
    return app


def _live_stats(state: handlers.ServerState) -> dict[str, Any]:
    """The studio dashboard's numbers: `lmf serve stats` rows from this app's own metrics, queue depth."""
    payload, _ = state.metrics.render()
    scheduler = state.served.scheduler
    return {
        "rows": summarise(payload.decode()),
        "queue_depth": len(scheduler.waiting),
        "active": scheduler.active(),
    }


def _batch_service(batch_dir: "str | Path | None", state: handlers.ServerState) -> "BatchService | None":
    if batch_dir is None:
        return None

    require("python_multipart", extra="serve", package="python-multipart")  # file uploads
    return BatchService(batch_dir, state)


def _json(error: APIError) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _install_error_handlers(app: "FastAPI") -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def api_error(_request: Any, exc: APIError) -> Any:
        return _json(exc)

    async def lmf_error(_request: Any, exc: LmfError) -> Any:
        return _json(handlers.to_api_error(exc))

    async def validation_error(_request: Any, exc: RequestValidationError) -> Any:
        return _json(from_validation_errors(list(exc.errors())))

    async def http_error(_request: Any, exc: HTTPException) -> Any:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        return _json(APIError(exc.status_code, message, type=kind, headers=dict(exc.headers or {})))

    async def unexpected(_request: Any, exc: Exception) -> Any:
        log.exception("unhandled error", exc_info=exc)
        return _json(handlers.to_api_error(exc))

    app.add_exception_handler(APIError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(LmfError, lmf_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)


def _respond(result: Any) -> Any:
    from fastapi.responses import StreamingResponse

    if isinstance(result, dict):
        return result
    return StreamingResponse(
        result,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _add_openai_routes(app: "FastAPI", state: handlers.ServerState) -> None:

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": state.served.name}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return handlers.list_models(state)

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        for card in handlers.list_models(state)["data"]:
            if card["id"] == model_id:
                return dict(card)
        raise not_found(f"the model {model_id!r} does not exist", "model", "model_not_found")

    @app.post("/v1/chat/completions")
    async def chat(body: ChatCompletionRequest) -> Any:
        return _respond(await handlers.chat_completions(state, body))

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        return _respond(await handlers.completions(state, body))

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> Any:
        return await handlers.embeddings(state, body)


def _add_admin_routes(app: "FastAPI", state: handlers.ServerState) -> None:
    from anyio import to_thread
    from fastapi.responses import Response

    def pool() -> Any:
        if state.served.adapters is None:
            raise APIError(400, f"model {state.served.name!r} serves no adapters (transformers backend only)")
        return state.served.adapters

    @app.get("/metrics")
    async def metrics() -> Any:
        payload, content_type = state.metrics.render()
        return Response(payload, media_type=content_type)

    @app.get("/v1/adapters")
    async def list_adapters() -> dict[str, Any]:
        return {"object": "list", "data": pool().describe()}

    @app.post("/v1/adapters", status_code=201)
    async def add_adapter(body: AdapterRequest) -> dict[str, Any]:
        adapters = pool()
        try:
            await to_thread.run_sync(lambda: adapters.register(body.name, body.path))
        except Exception as exc:
            raise handlers.to_api_error(exc, busy_status=409) from exc
        return next(a for a in adapters.describe() if a["name"] == body.name)

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackRequest) -> dict[str, Any]:
        if state.capture is None:
            raise APIError(404, "feedback needs capture (start the server with --capture DB)")

        try:
            state.capture.add_feedback(body.id, body.index, body.rating)
        except UnknownExchangeError as exc:
            raise APIError(404, str(exc), param="id") from exc
        return {"id": body.id, "index": body.index, "rating": body.rating}

    @app.delete("/v1/adapters/{name}")
    async def delete_adapter(name: str) -> dict[str, Any]:
        adapters = pool()
        try:
            await to_thread.run_sync(lambda: adapters.remove(name))
        except Exception as exc:
            raise handlers.to_api_error(exc, busy_status=409) from exc
        return {"name": name, "deleted": True}


def _add_batch_routes(app: "FastAPI", service: "BatchService | None") -> None:
    """`/v1/files` and `/v1/batches` (OpenAI batch API); a clear 404 when batches are disabled."""
    if service is None:
        _add_disabled_batch_routes(app)
        return
    _add_file_routes(app, service.files)
    _add_batch_job_routes(app, service)


def _add_disabled_batch_routes(app: "FastAPI") -> None:
    """Every method under `/v1/files` and `/v1/batches` answers 404 saying how to enable batches."""

    async def disabled(rest: str) -> Any:
        raise not_found("batch jobs are disabled on this server (start it with --batch-dir DIR)")

    for prefix in ("/v1/files", "/v1/batches"):
        app.add_api_route(
            prefix + "{rest:path}", disabled, methods=["GET", "POST", "DELETE"], include_in_schema=False
        )


def _add_file_routes(app: "FastAPI", files: "FileStore") -> None:
    """`/v1/files`: upload, list, get, download and delete the files batch jobs read and write."""
    from typing import Annotated, Literal

    from fastapi import File, Form, Query, UploadFile
    from fastapi.responses import Response

    @app.post("/v1/files")
    async def upload_file(
        file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]
    ) -> dict[str, Any]:
        content = await file.read()
        return files.upload(file.filename or "upload.jsonl", purpose, content)

    @app.get("/v1/files")
    async def list_files(
        purpose: str | None = None,
        limit: int = Query(10000, ge=1, le=10000),
        after: str | None = None,
        order: Literal["asc", "desc"] = "desc",
    ) -> dict[str, Any]:
        return files.list_all(purpose, limit, after, order)

    @app.get("/v1/files/{file_id}")
    async def get_file(file_id: str) -> dict[str, Any]:
        return files.get(file_id)

    @app.get("/v1/files/{file_id}/content", response_class=Response)
    async def file_content(file_id: str) -> Any:
        return Response(files.content(file_id), media_type="application/octet-stream")

    @app.delete("/v1/files/{file_id}")
    async def delete_file(file_id: str) -> dict[str, Any]:
        return files.delete(file_id)


def _add_batch_job_routes(app: "FastAPI", service: "BatchService") -> None:
    """`/v1/batches`: create, list, get and cancel batch jobs; creating or cancelling wakes the worker."""
    from fastapi import Query

    batches = service.batches

    @app.post("/v1/batches")
    async def create_batch(body: BatchCreateRequest) -> dict[str, Any]:
        batch = batches.create(body.input_file_id, body.endpoint, body.completion_window, body.metadata)
        service.worker.wake()
        return batch

    @app.get("/v1/batches")
    async def list_batches(limit: int = Query(20, ge=1, le=100), after: str | None = None) -> dict[str, Any]:
        return batches.list_all(limit, after)

    @app.get("/v1/batches/{batch_id}")
    async def get_batch(batch_id: str) -> dict[str, Any]:
        return batches.get(batch_id)

    @app.post("/v1/batches/{batch_id}/cancel")
    async def cancel_batch(batch_id: str) -> dict[str, Any]:
        batch = batches.cancel(batch_id)
        service.worker.wake()
        return batch
