"""The guardrails (`guardrails.py`) on Ollama's `/api/generate` and `/api/chat`.

Those routes translate each request into an OpenAI one and read the OpenAI stream it produces
(ollama_format.py), so the guardrails apply to exactly what the `/v1` routes check: the translated
request (system prompt and messages included) before it is queued, and the OpenAI chunks before
they become Ollama lines. A blocked request is a 400 that the Ollama error middleware answers as
`{"error": "request blocked by the ... guardrail: ..."}`; a blocked reply ends with nothing more
and `done_reason: "content_filter"` (a cut one with "length"). Flags that did not block are in the
`X-Guardrail-Flags` header, as on `/v1`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from lmfoundry.serve import openai_format
from lmfoundry.serve.guardrails import Guardrails, StreamGuard
from lmfoundry.serve.schema import ChatCompletionRequest, CompletionRequest

FLAGS_HEADER = "X-Guardrail-Flags"


def check_request(
    guardrails: Guardrails, request: ChatCompletionRequest | CompletionRequest
) -> tuple[ChatCompletionRequest | CompletionRequest, dict[str, str]]:
    """The request after the request guardrails (PII redacted) and the response headers naming
    the flags raised; raises `GuardrailBlocked` (a 400) when one blocks."""
    chat = isinstance(request, ChatCompletionRequest)
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body, flags = guardrails.check_request(path, request.model_dump(exclude_unset=True))
    checked = type(request).model_validate(body)
    return checked, ({FLAGS_HEADER: ",".join(flags)} if flags else {})


async def filter_events(events: Any, guardrails: Guardrails) -> AsyncIterator[str]:
    """The OpenAI stream (SSE events) through the output guardrails. After a guardrail trips, the
    rest of the generation's text is dropped but its usage and end still pass, so the final Ollama
    line has its counts and the exchange is captured and counted like any other."""
    guard, tripped = StreamGuard(guardrails), False
    try:
        async for event in events:
            payload = event.removeprefix("data: ").strip()
            if payload == "[DONE]":
                yield event
                continue
            chunk = json.loads(payload)
            if tripped and chunk.get("choices"):
                continue
            tripped = tripped or guard.filter_chunk(chunk)
            yield openai_format.sse(chunk)
    finally:
        await events.aclose()
