"""The rollout's HTTP side: the middleware that opens each request's route and names the variant in
`X-LMF-Variant`, and the admin endpoints that change the rollout while the server runs.

    GET    /v1/rollout          the live rollout (variants, shares, canary window, rollback)
    PUT    /v1/rollout          replace it (body: the rollout file's content as JSON)
    DELETE /v1/rollout          stop it (requests go to the model they name)
    POST   /v1/rollout/promote  {"variant": "challenger"}: it becomes the champion (registry alias too)

Changing the rollout needs the server to have API keys (`--api-key`): a server open to anyone
answers GET only, so nobody can move its traffic without a key.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at runtime.
import time
from typing import TYPE_CHECKING, Any

from lmfoundry.serve import handlers
from lmfoundry.serve.errors import APIError
from lmfoundry.serve.rollout import CURRENT_ROUTE, RequestRoute, Rollout
from lmfoundry.serve.rollout_spec import RolloutSpec, parse_rollout

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI

VARIANT_HEADER = b"x-lmf-variant"


class RolloutMiddleware:
    """Open a `RequestRoute` per HTTP request; add the variant header; report status and latency."""

    def __init__(self, app: Any, rollout: Rollout) -> None:
        self.app, self.rollout = app, rollout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = RequestRoute(user=_header(scope, self.rollout.user_header().lower().encode()))
        token = CURRENT_ROUTE.set(route)
        started, status = time.monotonic(), 500

        async def send_with_variant(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if route.variant is not None:
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), (VARIANT_HEADER, route.variant.encode())],
                    }
            await send(message)

        try:
            await self.app(scope, receive, send_with_variant)
        finally:
            CURRENT_ROUTE.reset(token)
            if route.variant is not None:
                self.rollout.finish(route, status, time.monotonic() - started)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1") or None
    return None


def install_rollout(
    app: "FastAPI",
    state: handlers.ServerState,
    spec: RolloutSpec | None,
    *,
    mutable: bool,
    judge: "Callable[[str, str], float] | None" = None,
) -> None:
    """Give the app its rollout (applied now if `spec`), the middleware and the admin routes."""
    state.rollout = Rollout(state.metrics.registry, judge=judge)
    if spec is not None:
        state.rollout.apply(spec, state.served, _redactor(state))
    _add_routes(app, state, state.rollout, mutable)
    app.add_middleware(RolloutMiddleware, rollout=state.rollout)


def _redactor(state: handlers.ServerState) -> Any:
    """Shadow pairs are redacted like captured traffic when capture has patterns."""
    return getattr(state.capture, "redact", None)


def _add_routes(app: "FastAPI", state: handlers.ServerState, rollout: Rollout, mutable: bool) -> None:
    from anyio import to_thread
    from fastapi import Body

    def check_mutable() -> None:
        if not mutable:
            raise APIError(
                403,
                "changing the rollout needs a server started with --api-key (this one is open)",
                type="permission_error",
                code="rollout_admin_disabled",
            )

    @app.get("/v1/rollout")
    async def get_rollout() -> dict[str, Any]:
        return rollout.describe()

    @app.put("/v1/rollout")
    async def put_rollout(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        check_mutable()
        spec = parse_rollout(body, "PUT /v1/rollout")
        await to_thread.run_sync(rollout.apply, spec, state.served, _redactor(state))
        return rollout.describe()

    @app.delete("/v1/rollout")
    async def delete_rollout() -> dict[str, Any]:
        check_mutable()
        rollout.clear()
        return rollout.describe()

    @app.post("/v1/rollout/promote")
    async def promote(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        check_mutable()
        name = body.get("variant")
        if not isinstance(name, str) or set(body) != {"variant"}:
            raise APIError(400, 'the body must be {"variant": NAME}', param="variant")
        spec, moved = await to_thread.run_sync(rollout.promoted_spec, name)
        await to_thread.run_sync(rollout.apply, spec, state.served, _redactor(state))
        return {"promoted": name, "registry": moved, "rollout": rollout.describe()}
