"""The guardrails (`guardrails.py`) as ASGI middleware around the completion endpoints.

Plain ASGI, like the other middleware: the request body is checked (and PII redacted) before a
route parses it, and the reply is checked on its way out without the handlers knowing. A JSON
reply is buffered and filtered whole. A streamed reply is filtered event by event: block-lists,
the classifier and the length limit see the text accumulated so far and end the stream with
`finish_reason: "content_filter"` (or "length") when they trip; PII redaction applies to each
chunk, so a match split across two chunks can slip through (documented in docs/serving.md).
Flags that did not block (a redaction, an injection in "flag" mode) are listed in the
`X-Guardrail-Flags` response header.
"""

from __future__ import annotations

import json
from typing import Any

from lmfoundry.serve.guardrails import GUARDED_PATHS, GuardrailBlocked, Guardrails, StreamGuard
from lmfoundry.serve.middleware import ASGIApp, Receive, Scope, Send, replay_body, send_error

FLAGS_HEADER = b"x-guardrail-flags"


class GuardrailMiddleware:
    def __init__(self, app: ASGIApp, guardrails: Guardrails) -> None:
        self.app, self.guardrails = app, guardrails

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope["path"] not in GUARDED_PATHS:
            await self.app(scope, receive, send)
            return
        raw = await _read_body(receive)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):  # not JSON: the route answers with its own validation error
            await self.app(scope, replay_body([_request(raw)], receive), send)
            return
        try:
            body, flags = self.guardrails.check_request(scope["path"], body)
        except GuardrailBlocked as exc:
            await send_error(send, exc)
            return
        raw = json.dumps(body).encode()
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(raw)).encode())]}
        reply = _ReplyFilter(send, self.guardrails, scope["path"], flags)
        await self.app(scope, replay_body([_request(raw)], receive), reply.send)


def _request(raw: bytes) -> dict[str, Any]:
    return {"type": "http.request", "body": raw, "more_body": False}


async def _read_body(receive: Receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


class _ReplyFilter:
    """A `send` that passes errors through, filters a JSON body whole and an SSE stream per event."""

    def __init__(self, send: Send, guardrails: Guardrails, path: str, flags: list[str]) -> None:
        self._send, self.guardrails, self.path, self.flags = send, guardrails, path, flags
        self.start: dict[str, Any] | None = None
        self.mode = "pass"
        self.buffer = b""
        self.stream = StreamGuard(guardrails)
        self.closed = False

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            await self._on_start(message)
        elif message["type"] == "http.response.body" and self.mode == "json":
            await self._on_json(message)
        elif message["type"] == "http.response.body" and self.mode == "sse":
            await self._on_sse(message)
        else:
            await self._send(message)

    async def _on_start(self, message: dict[str, Any]) -> None:
        headers = list(message.get("headers", []))
        if self.flags:
            headers.append((FLAGS_HEADER, ",".join(self.flags).encode()))
        message = {**message, "headers": headers}
        content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
        if message["status"] != 200:
            await self._send(message)
        elif content_type.startswith(b"text/event-stream"):
            self.mode = "sse"
            await self._send(message)
        else:
            self.mode, self.start = "json", message

    async def _on_json(self, message: dict[str, Any]) -> None:
        self.buffer += message.get("body", b"")
        if message.get("more_body", False):
            return
        body = self.guardrails.filter_response(self.path, json.loads(self.buffer))
        raw = json.dumps(body).encode()
        assert self.start is not None
        headers = [(k, v) for k, v in self.start["headers"] if k.lower() != b"content-length"]
        await self._send({**self.start, "headers": [*headers, (b"content-length", str(len(raw)).encode())]})
        await self._send({"type": "http.response.body", "body": raw, "more_body": False})

    async def _on_sse(self, message: dict[str, Any]) -> None:
        more = message.get("more_body", False)
        self.buffer += message.get("body", b"")
        events, _, self.buffer = self.buffer.rpartition(b"\n\n")
        out = (
            b"".join(self._event(e) for e in events.split(b"\n\n") if e)
            if events and not self.closed
            else b""
        )
        await self._send({"type": "http.response.body", "body": out, "more_body": more})

    def _event(self, event: bytes) -> bytes:
        """One SSE event, filtered; after a block, the closing chunk and [DONE], then nothing."""
        if self.closed:
            return b""
        data = event.removeprefix(b"data: ")
        if data.strip() == b"[DONE]":
            return event + b"\n\n"
        chunk = json.loads(data)
        self.closed = self.stream.filter_chunk(chunk)
        return b"data: " + json.dumps(chunk).encode() + (b"\n\ndata: [DONE]\n\n" if self.closed else b"\n\n")
