"""`mount_studio(app)`: the `/ui` pages and their JSON API (`/ui/api/...`) on a FastAPI app.

The server mounts it (`serve/app.py`); it gets what it needs from the server as plain values (the
live statistics as a function), so the studio does not import `serve` and the two stay one process.
Routes are plain `def`s: FastAPI runs them on its thread pool, so a slow store read or a pull never
blocks the event loop streaming tokens. The static shell (`/ui`, `/ui/static/*`) carries no data and
is open; every `/ui/api` route sits behind the server's API-key middleware like `/v1`.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at runtime.
from collections.abc import Callable
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lmfoundry.errors import LmfError
from lmfoundry.models import store
from lmfoundry.prompts.registry import builtin_names, list_prompts
from lmfoundry.quantize.store_entry import METHODS, check_method, create_quantized
from lmfoundry.rag.answer import build_messages, cite_answer, hit_to_dict
from lmfoundry.rag.index import list_stores
from lmfoundry.rag.search import opened, search
from lmfoundry.studio import runs
from lmfoundry.studio.arena import append_vote, preference_record
from lmfoundry.studio.config import StudioConfig
from lmfoundry.studio.jobs import Jobs
from lmfoundry.studio.structured import check_json_reply
from lmfoundry.track import registry

STATIC_FILES = {
    "app.js": "text/javascript",
    "chat.js": "text/javascript",
    "arena.js": "text/javascript",
    "runs.js": "text/javascript",
    "models.js": "text/javascript",
    "render.js": "text/javascript",
    "formats.js": "text/javascript",
    "studio.css": "text/css",
}
# The page may load only its own scripts, styles and images: an injected tag could not run anyway.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(_Body):
    role: str
    content: str


class RagContext(_Body):
    store: str
    question: str = Field(min_length=1)
    k: int = Field(4, ge=1, le=20)
    mode: str = "hybrid"


class Document(_Body):
    source: str
    text: str


class RagCite(_Body):
    store: str
    answer: str
    documents: list[Document] = Field(max_length=20)


class JsonReply(_Body):
    text: str
    json_schema: dict[str, Any] | None = Field(None, alias="schema")


class Vote(_Body):
    prompt: list[Message] = Field(min_length=1)
    chosen: str
    rejected: str


class Promote(_Body):
    version: int = Field(ge=1)
    alias: str = "champion"


class Rollback(_Body):
    alias: str = "champion"


class Pull(_Body):
    source: str = Field(min_length=1)
    name: str | None = None


class Quantize(_Body):
    model: str = Field(min_length=1)
    method: str
    name: str | None = None


QUANTIZE_STAGES = 3
"""`create_quantized` reports three steps: load; quantize (GGUF: write the fp32 GGUF); write
(GGUF: llama.cpp's quantizer). GPTQ reports one per block and is not offered by the page."""


def static_text(name: str) -> bytes:
    return resources.files("lmfoundry.studio").joinpath("static", name).read_bytes()


def mount_studio(app: Any, config: StudioConfig, server_stats: Callable[[], dict[str, Any]]) -> None:
    """Add `/ui` to `app`; `server_stats()` returns the live per-model latency rows and queue depth."""
    if not config.enabled:
        return
    _add_pages(app)
    _add_chat_routes(app, config)
    _add_run_routes(app, config)
    _add_model_routes(app, server_stats)
    _add_quantize_routes(app, Jobs())
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )


def _add_pages(app: Any) -> None:
    from fastapi.responses import RedirectResponse, Response

    headers = {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }

    @app.get("/ui", include_in_schema=False)
    def index() -> Any:
        return Response(static_text("index.html"), media_type="text/html", headers=headers)

    @app.get("/ui/", include_in_schema=False)
    def index_slash() -> Any:
        return RedirectResponse("/ui")

    @app.get("/ui/static/{name}", include_in_schema=False)
    def static(name: str) -> Any:
        if name not in STATIC_FILES:
            from starlette.exceptions import HTTPException

            raise HTTPException(404)
        return Response(static_text(name), media_type=STATIC_FILES[name], headers=headers)


def _add_chat_routes(app: Any, config: StudioConfig) -> None:
    @app.get("/ui/api/stores", include_in_schema=False)
    def stores() -> dict[str, Any]:
        return {"stores": list_stores()}

    @app.get("/ui/api/prompts", include_in_schema=False)
    def prompts() -> dict[str, Any]:
        """Templates the chat can apply (`prompt_template` on /v1/chat/completions): built-in and registered."""
        if not config.tracking:
            return {
                "prompts": [{"name": n, "version": "builtin", "source": "builtin"} for n in builtin_names()]
            }
        return {"prompts": list_prompts()}

    @app.post("/ui/api/rag/context", include_in_schema=False)
    def rag_context(body: RagContext) -> dict[str, Any]:
        """The numbered documents and the messages `lmf rag ask` would send; the page streams them."""
        hits = search(body.store, body.question, k=body.k, mode=body.mode)
        messages = build_messages(body.question, [h.chunk.text for h in hits])
        return {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "hits": [hit_to_dict(h) for h in hits],
        }

    @app.post("/ui/api/rag/cite", include_in_schema=False)
    def rag_cite(body: RagCite) -> dict[str, Any]:
        """The documents a streamed answer draws on, as `lmf rag ask` attributes them: the ones it
        cites, else the closest by the store's embedder (loaded only then)."""
        sources = [d.source for d in body.documents]
        texts = [d.text for d in body.documents]
        with opened(body.store) as index:
            return {"citations": cite_answer(body.answer, sources, texts, "auto", lambda: index.embedder)}

    @app.post("/ui/api/json/check", include_in_schema=False)
    def json_check(body: JsonReply) -> dict[str, Any]:
        """Whether a JSON-mode reply parses and validates against its schema (a reply cut by
        max_tokens does not), and the value to show."""
        return check_json_reply(body.text, body.json_schema)

    @app.post("/ui/api/arena/vote", include_in_schema=False)
    def vote(body: Vote) -> dict[str, Any]:
        record = preference_record([m.model_dump() for m in body.prompt], body.chosen, body.rejected)
        path = config.preferences_path()
        return {"path": str(path), "pairs": append_vote(path, record)}


def _add_run_routes(app: Any, config: StudioConfig) -> None:
    @app.get("/ui/api/runs", include_in_schema=False)
    def run_list() -> dict[str, Any]:
        return {"root": str(config.runs_root), "runs": runs.list_runs(config.runs_root)}

    @app.get("/ui/api/run", include_in_schema=False)
    def run(id: str, after: int = 0) -> dict[str, Any]:  # noqa: A002 (the query parameter's name)
        return runs.run_detail(config.runs_root, id, after)

    def tracked() -> None:
        if not config.tracking:
            raise LmfError("the registry is off in this studio (started with tracking disabled)")

    @app.get("/ui/api/registry", include_in_schema=False)
    def registry_list() -> dict[str, Any]:
        tracked()
        return {"models": registry.list_models()}

    @app.get("/ui/api/registry/{name}", include_in_schema=False)
    def registry_show(name: str) -> dict[str, Any]:
        tracked()
        return registry.show(name)

    @app.post("/ui/api/registry/{name}/promote", include_in_schema=False)
    def promote(name: str, body: Promote) -> dict[str, Any]:
        tracked()
        return registry.promote(name, body.version, body.alias)

    @app.post("/ui/api/registry/{name}/rollback", include_in_schema=False)
    def rollback(name: str, body: Rollback) -> dict[str, Any]:
        tracked()
        return registry.rollback(name, body.alias)


def _add_model_routes(app: Any, server_stats: Callable[[], dict[str, Any]]) -> None:
    @app.get("/ui/api/models", include_in_schema=False)
    def models() -> dict[str, Any]:
        return {"models": store.list_models(), "quantize_methods": list(METHODS)}

    @app.get("/ui/api/models/{name}", include_in_schema=False)
    def model(name: str) -> dict[str, Any]:
        return store.show(name)

    @app.post("/ui/api/models/pull", include_in_schema=False)
    def pull(body: Pull) -> dict[str, Any]:
        path = store.pull(body.source, body.name)
        return {"name": path.name, "path": str(path)}

    @app.delete("/ui/api/models/{name}", include_in_schema=False)
    def remove(name: str) -> dict[str, Any]:
        return {"name": name, "removed": str(store.remove(name))}

    @app.get("/ui/api/server", include_in_schema=False)
    def server() -> dict[str, Any]:
        return server_stats()


def _add_quantize_routes(app: Any, jobs: Jobs) -> None:
    @app.post("/ui/api/models/quantize", include_in_schema=False)
    def quantize(body: Quantize) -> dict[str, Any]:
        """Start `lmf quantize MODEL --method METHOD [--name NAME]` as a job; poll /ui/api/jobs/{id}."""
        method = check_method(body.method)
        name = body.name or None

        def work(step: Callable[[str], None]) -> dict[str, Any]:
            return create_quantized(body.model, method, name=name, on_step=step)

        return jobs.start("quantize", f"quantizing {body.model} to {method}", QUANTIZE_STAGES, work).to_dict()

    @app.get("/ui/api/jobs", include_in_schema=False)
    def job_list() -> dict[str, Any]:
        return {"jobs": jobs.listing()}

    @app.get("/ui/api/jobs/{job_id}", include_in_schema=False)
    def job(job_id: str) -> dict[str, Any]:
        return jobs.get(job_id)
