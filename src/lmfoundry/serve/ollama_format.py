"""Ollama's wire format, as pure functions over our OpenAI one: requests in, replies out.

Why a translation and not a second pipeline: an Ollama request becomes the OpenAI request it
means (`options.num_predict` -> `max_tokens`, `format` -> `response_format`, `tools` as they are),
so it runs through the very handlers, validation, limits, scheduler, metrics and capture that
/v1/chat/completions and /v1/completions use, and a greedy answer is the same on both APIs. The
OpenAI stream that comes back is read chunk by chunk (`Reply`) and written out in Ollama's shapes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from lmfoundry.generate.tools import new_call
from lmfoundry.serve import openai_format
from lmfoundry.serve.errors import APIError, bad_request, from_validation_errors
from lmfoundry.serve.ollama_schema import (
    MAX_NUM_PREDICT_SPECIAL,
    ChatRequest,
    GenerateRequest,
    OllamaMessage,
    OllamaOptions,
    OllamaToolCall,
)
from lmfoundry.serve.schema import ChatCompletionRequest, CompletionRequest

LATEST = ":latest"
OLLAMA_NAMES = {
    "max_tokens": "options.num_predict",
    "temperature": "options.temperature",
    "top_p": "options.top_p",
    "top_k": "options.top_k",
    "min_p": "options.min_p",
    "seed": "options.seed",
    "stop": "options.stop",
    "repetition_penalty": "options.repeat_penalty",
    "response_format": "format",
}
"""Our OpenAI field -> the Ollama field it came from, so a 400 names what the client sent."""


@dataclass(frozen=True)
class Limits:
    """The server settings a translated request must respect."""

    max_tokens: int
    default_max_tokens: int
    context_length: int


def served_id(requested: str, base: str) -> str:
    """Our model id for an Ollama model name: `base:latest` is the base model (Ollama's default
    tag); anything else, `base:adapter` included, is looked up as the OpenAI routes do."""
    return base if requested == base + LATEST else requested


def strip_latest(name: str) -> str:
    return name.removesuffix(LATEST)


def openai_request(cls: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate `data` as our OpenAI request `cls`; a failure is a 400 naming the Ollama field."""
    try:
        return cls(**data)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            loc = [str(part) for part in error.get("loc", ())]
            if loc and loc[0] in OLLAMA_NAMES:
                loc = [OLLAMA_NAMES[loc[0]], *loc[1:]]
            errors.append({**error, "loc": tuple(loc)})
        raise from_validation_errors(errors) from exc


def _max_tokens(num_predict: int | None, limits: Limits) -> int:
    if num_predict is None:
        return limits.default_max_tokens
    if num_predict in MAX_NUM_PREDICT_SPECIAL:
        return limits.max_tokens
    if num_predict == 0:
        raise bad_request("options.num_predict must be positive, -1 or -2", "options.num_predict")
    if num_predict > limits.max_tokens:
        raise bad_request(
            f"options.num_predict={num_predict} exceeds this server's limit of {limits.max_tokens}",
            "options.num_predict",
        )
    return num_predict


def sampling_fields(options: OllamaOptions | None, limits: Limits) -> dict[str, Any]:
    """Ollama options as our OpenAI sampling fields (unset ones left out: the profile decides)."""
    o = options or OllamaOptions()
    if o.num_ctx is not None and o.num_ctx > limits.context_length:
        raise bad_request(
            f"options.num_ctx={o.num_ctx} exceeds the model's context length of {limits.context_length}",
            "options.num_ctx",
        )
    fields = {
        "max_tokens": _max_tokens(o.num_predict, limits),
        "temperature": o.temperature,
        "top_p": o.top_p,
        "top_k": o.top_k,
        "min_p": o.min_p,
        "seed": o.seed,
        "stop": o.stops(),
        "repetition_penalty": 1.0 if o.repeat_last_n == 0 else o.repeat_penalty,
    }
    return {name: value for name, value in fields.items() if value is not None}


def response_format(form: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """Ollama's `format` as an OpenAI `response_format`. A schema is closed (no properties beyond
    those listed), as llama.cpp's schema grammars are by default."""
    if not form:
        return None
    if form == "json":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "format", "schema": form, "strict": True}}


def openai_messages(messages: list[OllamaMessage]) -> list[dict[str, Any]]:
    """Ollama chat turns as OpenAI ones: call arguments become JSON strings, `tool_name` the name."""
    out = []
    for m in messages:
        turn: dict[str, Any] = {"role": m.role, "content": m.content or ""}
        if m.tool_calls:
            turn["tool_calls"] = [_openai_call(call) for call in m.tool_calls]
        if m.tool_name:
            turn["name"] = m.tool_name
        if m.tool_call_id:
            turn["tool_call_id"] = m.tool_call_id
        out.append(turn)
    return out


def _openai_call(call: OllamaToolCall) -> dict[str, Any]:
    made = new_call(call.function.name, call.function.arguments)  # arguments as a JSON string
    return {**made, "id": call.id or made["id"]}


def _streamed(model_id: str, body: ChatRequest | GenerateRequest, limits: Limits) -> dict[str, Any]:
    """The fields every translated request has: always streamed with usage, which gives the
    timings Ollama reports (an Ollama `stream: false` is the stream added up)."""
    return {
        "model": model_id,
        "stream": True,
        "stream_options": {"include_usage": True},
        **sampling_fields(body.options, limits),
    }


def chat_request(model_id: str, body: ChatRequest, limits: Limits) -> ChatCompletionRequest:
    data = {**_streamed(model_id, body, limits), "messages": openai_messages(body.messages)}
    if (form := response_format(body.format)) is not None:
        data["response_format"] = form
    if body.tools:
        if body.format:
            raise bad_request("give either tools or a format, not both", "format")
        data["tools"] = body.tools
    return openai_request(ChatCompletionRequest, data)  # type: ignore[no-any-return]


def generate_request(
    model_id: str, body: GenerateRequest, limits: Limits, *, chat_template: bool
) -> ChatCompletionRequest | CompletionRequest:
    """A one-turn chat through the chat template, or with `raw` (or a model without one) the
    prompt as is, as /v1/completions takes it."""
    if body.raw or not chat_template:
        why = "raw=true" if body.raw else "this model has none"
        for name, value in (("system", body.system), ("format", body.format)):
            if value:
                raise bad_request(f"{name} needs the chat template ({why})", name)
        data = {**_streamed(model_id, body, limits), "prompt": body.prompt or ""}
        return openai_request(CompletionRequest, data)  # type: ignore[no-any-return]
    turns = [{"role": "system", "content": body.system}] if body.system else []
    turns.append({"role": "user", "content": body.prompt or ""})
    data = {**_streamed(model_id, body, limits), "messages": turns}
    if (form := response_format(body.format)) is not None:
        data["response_format"] = form
    return openai_request(ChatCompletionRequest, data)  # type: ignore[no-any-return]


def created_at() -> str:
    """Ollama's timestamp: RFC 3339 in UTC."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Clock:
    """When a request arrived, was queued, produced its first token and ended (perf_counter_ns)."""

    arrived: int = field(default_factory=time.perf_counter_ns)
    queued: int = 0
    first: int = 0
    ended: int = 0

    def mark(self, name: str) -> None:
        if not getattr(self, name):
            setattr(self, name, time.perf_counter_ns())

    def durations(self) -> dict[str, int]:
        """Ollama's durations in ns, measured at the HTTP layer: load = parsing, templating and
        tokenizing (the model is always loaded), prompt eval = queue + prefill to the first token."""
        queued = self.queued or self.arrived
        ended = self.ended or time.perf_counter_ns()
        first = self.first or ended
        return {
            "total_duration": ended - self.arrived,
            "load_duration": queued - self.arrived,
            "prompt_eval_duration": first - queued,
            "eval_duration": max(ended - first, 1),  # clients divide by it for tokens/s
        }


@dataclass
class Reply:
    """An OpenAI stream (chat or text completion chunks, SSE-framed), added up as it is read."""

    text: str = ""
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    error: dict[str, Any] | None = None

    def read(self, event: str) -> str:
        """Take one SSE event; return the text it adds ('' for none)."""
        payload = event.removeprefix("data: ").strip()
        if payload == openai_format.DONE.removeprefix("data: ").strip():
            return ""
        chunk = json.loads(payload)
        if "error" in chunk:
            self.error = chunk["error"]
            return ""
        self.usage = chunk.get("usage") or self.usage
        choice = (chunk.get("choices") or [{}])[0]  # one choice: Ollama has no `n`
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        delta = choice.get("delta", {})
        for call in delta.get("tool_calls", ()):
            self._add_call(call)
        text = str(delta.get("content") or choice.get("text") or "")
        self.text += text
        return text

    def _add_call(self, delta: dict[str, Any]) -> None:
        call = self.calls.setdefault(delta["index"], {"name": "", "arguments": ""})
        function = delta.get("function", {})
        call["name"] += function.get("name") or ""
        call["arguments"] += function.get("arguments") or ""

    def tool_calls(self) -> list[dict[str, Any]]:
        """The calls in Ollama's shape: arguments as an object."""
        return [
            {"function": {"index": i, "name": c["name"], "arguments": json.loads(c["arguments"] or "{}")}}
            for i, c in sorted(self.calls.items())
        ]

    def done_reason(self) -> str:
        """Ollama's "stop" or "length" (a turn that called tools stopped), or "content_filter" when
        a guardrail blocked the reply (Ollama has no such reason; the client sees OpenAI's)."""
        return self.finish_reason if self.finish_reason in ("length", "content_filter") else "stop"

    def failure(self) -> APIError:
        """The error the stream ended with, as the status a non-streamed reply answers."""
        error = self.error or {}
        status = 504 if error.get("code") == "timeout" else 500
        return APIError(status, str(error.get("message", "generation failed")), code=error.get("code"))


def piece(model: str, text: str, *, chat: bool, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One streamed object (done: false)."""
    head: dict[str, Any] = {"model": model, "created_at": created_at()}
    if not chat:
        return {**head, "response": text, "done": False}
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = calls
    return {**head, "message": message, "done": False}


def final(model: str, reply: Reply, clock: Clock, *, chat: bool, streamed: bool) -> dict[str, Any]:
    """The last object: the whole answer when not streamed, and the counts and durations."""
    text = "" if streamed else reply.text
    body = piece(model, text, chat=chat, calls=None if streamed else reply.tool_calls())
    stats = {
        "prompt_eval_count": reply.usage.get("prompt_tokens", 0),
        "eval_count": reply.usage.get("completion_tokens", 0),
    }
    return {**body, "done": True, "done_reason": reply.done_reason(), **clock.durations(), **stats}


def loaded(model: str, *, chat: bool) -> dict[str, Any]:
    """The answer to an empty prompt or conversation: Ollama's way to load a model (always loaded here)."""
    return {**piece(model, "", chat=chat), "done": True, "done_reason": "load"}


def embed_reply(model: str, result: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """/v1/embeddings' body as /api/embed's."""
    clock.mark("ended")
    durations = clock.durations()
    return {
        "model": model,
        "embeddings": [item["embedding"] for item in result["data"]],
        "total_duration": durations["total_duration"],
        "load_duration": durations["load_duration"],
        "prompt_eval_count": result["usage"]["prompt_tokens"],
    }


def ndjson(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"
