"""ASGI middleware: API-key check, request-size limit and per-endpoint request counting.

Plain ASGI (not FastAPI dependencies) so the key check runs before the body is even read: an
unauthenticated client gets a 401, never a 400 about its JSON, and a huge body is refused (413)
before it is buffered.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.serve.errors import APIError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/health", "/ui", "/ui/"})
OPEN_PREFIXES = ("/ui/static/",)  # the studio's page shell: no data; its /ui/api calls need a key


def load_api_keys(keys: Iterable[str] = (), keys_file: str | Path | None = None) -> list[str]:
    """Keys from the command line plus a file (one per line, `#` comments and blank lines ignored)."""
    found = [k.strip() for k in keys if k.strip()]
    if keys_file is not None:
        path = Path(keys_file)
        if not path.is_file():
            raise InvalidInputError(f"API keys file not found: {path}")
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.append(line)
        if not found:
            raise InvalidInputError(f"API keys file {path} holds no keys")
    return found


async def send_error(send: Send, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class APIKeyMiddleware:
    """Require `Authorization: Bearer <key>` on every path but /health when keys are configured."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]

    def _allowed(self, scope: Scope) -> bool:
        header = _header(scope, b"authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        given = token.strip().encode()
        return any(hmac.compare_digest(given, key) for key in self.keys)  # constant time

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or _open(scope["path"]) or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        await send_error(
            send,
            APIError(
                401,
                "missing or invalid API key: send `Authorization: Bearer <key>`",
                type="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            ),
        )


class BodyTooLargeError(APIError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than the {limit}-byte limit", code="request_too_large")


class BodyLimitMiddleware:
    """Refuse bodies above `limit` bytes: by Content-Length up front, or while reading chunked bodies.

    `path_limits` gives exact paths their own limit (file uploads are larger than requests)."""

    def __init__(self, app: ASGIApp, limit: int, path_limits: dict[str, int] | None = None) -> None:
        self.app, self.default_limit = app, limit
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.default_limit)
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await send_error(send, BodyTooLargeError(limit))
            return
        # Read the whole body here (at most `limit` bytes are ever held), then replay it to the app.
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, replay_body([message]), send)
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            more = message.get("more_body", False)
            if seen > limit:
                await send_error(send, BodyTooLargeError(limit))
                return
        await self.app(
            scope,
            replay_body([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive),
            send,
        )


def replay_body(messages: list[dict[str, Any]], then: Receive | None = None) -> Receive:
    """A `receive` that returns `messages` first, then defers to `then` (disconnect notices)."""
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


class CountingMiddleware:
    """Count answered requests by route and status (for /metrics)."""

    def __init__(self, app: ASGIApp, count: Callable[[str, int], None]) -> None:
        self.app, self.count = app, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        recorder = StatusRecorder(send)
        try:
            await self.app(scope, receive, recorder)
        finally:
            self.count(endpoint_label(scope["path"]), recorder.status)


class StatusRecorder:
    """A `send` that passes messages on and keeps the response status (500 until one starts)."""

    def __init__(self, send: Send) -> None:
        self.send, self.status = send, 500

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        await self.send(message)


KNOWN_ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/adapters",
    "/v1/rollout",
    "/v1/files",
    "/v1/batches",
    "/metrics",
    "/health",
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/api/tags",
    "/api/show",
    "/api/ps",
    "/api/version",
)


def endpoint_label(path: str) -> str:
    """A bounded label set: unknown paths share one label so scanners cannot blow up /metrics."""
    return next((k for k in KNOWN_ENDPOINTS if path == k or path.startswith(k + "/")), "other")
