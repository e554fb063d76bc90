"""Response bodies in the OpenAI wire format (plain dicts), and Server-Sent Events framing."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

DONE = "data: [DONE]\n\n"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _envelope(rid: str, obj: str, created: int, model: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    """The fields every completion body and chunk starts with, `choices` last."""
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": choices}


def chat_completion(
    rid: str,
    model: str,
    created: int,
    choices: list[tuple[str | dict[str, Any], str]],
    usage_: dict[str, int],
) -> dict[str, Any]:
    """`choices` is [(text or assistant message, finish_reason)] in index order."""
    bodies = [
        {
            "index": i,
            "message": reply if isinstance(reply, dict) else {"role": "assistant", "content": reply},
            "finish_reason": finish,
            "logprobs": None,
        }
        for i, (reply, finish) in enumerate(choices)
    ]
    return {**_envelope(rid, "chat.completion", created, model, bodies), "usage": usage_}


def chat_chunk(
    rid: str, model: str, created: int, index: int, delta: dict[str, Any], finish_reason: str | None
) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
    return _envelope(rid, "chat.completion.chunk", created, model, [choice])


def text_completion(
    rid: str,
    model: str,
    created: int,
    choices: list[tuple[str, str]],
    usage_: dict[str, int],
    logprobs: list[dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """`logprobs`, when given, holds each choice's legacy logprobs object (tokens, token_logprobs, ...)."""
    bodies = [
        {"index": i, "text": text, "finish_reason": finish, "logprobs": logprobs[i] if logprobs else None}
        for i, (text, finish) in enumerate(choices)
    ]
    return {**_envelope(rid, "text_completion", created, model, bodies), "usage": usage_}


def text_chunk(
    rid: str, model: str, created: int, index: int, text: str, finish_reason: str | None
) -> dict[str, Any]:
    choice = {"index": index, "text": text, "finish_reason": finish_reason, "logprobs": None}
    return _envelope(rid, "text_completion", created, model, [choice])


def usage_chunk(rid: str, model: str, created: int, obj: str, usage_: dict[str, int]) -> dict[str, Any]:
    """The final chunk sent when `stream_options.include_usage` is true: no choices, just usage."""
    return {**_envelope(rid, obj, created, model, []), "usage": usage_}


def model_card(model_id: str, created: int, owned_by: str = "lmfoundry") -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}
