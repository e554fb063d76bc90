"""The engine: prompt -> token ids -> backend token stream -> text, with stop strings and timing.

One implementation for every backend, so stop handling, streaming, greedy determinism and the
reported numbers (TTFT, tokens/s) mean the same thing whichever library does the forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lmfoundry import plugins
from lmfoundry.errors import InvalidInputError
from lmfoundry.generate.backend import Backend
from lmfoundry.generate.backend_choice import choose_backend, fast_entry, use_fast_gguf
from lmfoundry.generate.constraints import response_constraint
from lmfoundry.generate.text_stream import GenerationResult, StreamEvent, TextStream
from lmfoundry.generate.tools import (
    ToolSpec,
    call_constraint,
    fallback_messages,
    message_from_dict,
    parse_tool_calls,
    tool_spec,
)
from lmfoundry.models.load import resolve
from lmfoundry.models.store import weights_format
from lmfoundry.types import Message, SamplingParams


@dataclass
class ChatReply:
    """A chat turn's answer as an OpenAI assistant message, with the generation behind it."""

    message: dict[str, Any]
    """{"role": "assistant", "content": str | None, "tool_calls": [...] (only when it called tools)}"""
    finish_reason: str
    """"tool_calls", "stop" or "length"."""
    result: GenerationResult


def run_stream(backend: Backend, prompt_ids: list[int], params: SamplingParams) -> Iterator[StreamEvent]:
    """Drive `backend` and yield text deltas; stop strings are cut from the text, never emitted."""
    if len(prompt_ids) >= backend.context_length:
        raise InvalidInputError(
            f"prompt is {len(prompt_ids)} tokens but the context length is {backend.context_length}"
        )
    params = params.replace(
        max_new_tokens=min(params.max_new_tokens, backend.context_length - len(prompt_ids))
    )
    text = TextStream(
        backend.decode, backend.eos_ids, params.stop, prompt_tokens=len(prompt_ids), backend=backend.name
    )
    stream = backend.token_stream(prompt_ids, params)
    try:
        yield from text.events(stream)
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
    yield text.final()


class LoadedModel:
    """A model ready to generate: a backend plus a profile's system prompt and sampling defaults."""

    def __init__(
        self,
        name: str,
        backend: Backend,
        *,
        defaults: SamplingParams | None = None,
        system: str | None = None,
        prompt: str | None = None,
    ) -> None:
        self.name = name
        self.runtime = backend
        self.defaults = defaults or SamplingParams()
        self.system = system
        self.prompt = prompt
        """A profile's prompt template spec (applied by `lmf generate/chat` and the server)."""

    @property
    def backend(self) -> str:
        return self.runtime.name

    @property
    def tokenizer(self) -> Any:
        return self.runtime.tokenizer

    @property
    def context_length(self) -> int:
        return self.runtime.context_length

    def count_tokens(self, text: str) -> int:
        return len(self.runtime.encode(text))

    def has_chat_template(self) -> bool:
        return bool(self.runtime.has_chat_template())

    def count_prompt_tokens(self, prompt: str | list[Message]) -> int:
        """Tokens of the prompt as the model gets it (a message list through its chat template)."""
        return len(self.prompt_ids(prompt))

    def prompt_ids(self, prompt: str | list[Message]) -> list[int]:
        """Raw text is tokenized as is; a message list goes through the chat template."""
        if isinstance(prompt, str):
            return self.runtime.encode(prompt)
        messages = list(prompt)
        if self.system and not any(m.role == "system" for m in messages):
            messages.insert(0, Message("system", self.system))
        return self.runtime.chat_ids(messages)

    def tool_prompt_ids(self, messages: list[Message], spec: ToolSpec | None) -> list[int]:
        """A conversation with tools (or with earlier tool turns) as prompt ids: through the chat
        template's own tool support when it has one, else the fallback format (see generate/tools)."""
        tools_seen = spec is not None or any(m.role == "tool" or m.tool_calls for m in messages)
        if not tools_seen:
            return self.prompt_ids(messages)
        if self.system and not any(m.role == "system" for m in messages):  # a profile's system prompt
            messages = [Message("system", self.system), *messages]
        if self.runtime.supports_tools():
            functions = [{"type": "function", "function": f} for f in spec.functions] if spec else None
            return self.runtime.chat_ids(messages, tools=functions)
        return self.prompt_ids(fallback_messages(messages, spec))

    def chat(
        self,
        messages: list[Message] | list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        response_format: dict[str, Any] | None = None,
        params: SamplingParams | None = None,
        **overrides: Any,
    ) -> ChatReply:
        """One assistant turn, OpenAI style: tools and tool_choice, or a JSON response_format.

        Tool calls and JSON are enforced by constrained decoding, so arguments always parse and
        validate against their function's schema."""
        turns = [m if isinstance(m, Message) else message_from_dict(m) for m in messages]
        spec = tool_spec(tools, tool_choice, parallel_tool_calls)
        constraint = call_constraint(spec) if spec else response_constraint(response_format)
        if spec and response_format and response_format.get("type") != "text":
            raise InvalidInputError("give either tools or a JSON response_format, not both")
        chosen = self._params(params, overrides)
        if constraint is not None:
            chosen = chosen.replace(constraint=constraint)
        result = run_stream(self.runtime, self.tool_prompt_ids(turns, spec), chosen)
        final = next(e.result for e in result if e.result is not None)
        content, calls = parse_tool_calls(final.text) if spec else (final.text, [])
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        finish = "tool_calls" if calls and final.finish_reason == "stop" else final.finish_reason
        return ChatReply(message, finish, final)

    def _params(self, params: SamplingParams | None, overrides: dict[str, Any]) -> SamplingParams:
        return (params or self.defaults).replace(**overrides)

    def stream_events(
        self, prompt: str | list[Message], params: SamplingParams | None = None, **overrides: Any
    ) -> Iterator[StreamEvent]:
        return run_stream(self.runtime, self.prompt_ids(prompt), self._params(params, overrides))

    def stream(
        self, prompt: str | list[Message], params: SamplingParams | None = None, **overrides: Any
    ) -> Iterator[str]:
        """Yield generated text pieces as they are decoded."""
        for event in self.stream_events(prompt, params, **overrides):
            if event.delta:
                yield event.delta

    def generate(
        self, prompt: str | list[Message], params: SamplingParams | None = None, **overrides: Any
    ) -> GenerationResult:
        result: GenerationResult | None = None
        for event in self.stream_events(prompt, params, **overrides):
            result = event.result or result
        assert result is not None
        return result


def load_model(
    name: str,
    *,
    backend: str = "auto",
    adapters: list[str] | None = None,
    threads: int | None = None,
    speculative: str | None = None,
    fast_gguf: bool = True,
) -> LoadedModel:
    """Resolve `name`, pick a backend and load it (see `lmfoundry.load`).

    `speculative="prompt-lookup"` drafts tokens from n-grams of the prompt (llama.cpp only; same
    greedy output on float16 weights, faster when answers copy from the prompt). `fast_gguf=False`
    keeps `auto` on transformers for fp32 store models: for callers that will need what only that
    backend has (the server's per-request adapters and logprobs, the tokenizer of forced citations).
    """

    resolved = resolve(name)
    all_adapters = [*resolved.adapters, *(adapters or [])]
    if resolved.profile and resolved.profile.backend and backend == "auto":
        backend = resolved.profile.backend
    entry = fast_entry(resolved, has_adapters=bool(all_adapters)) if backend == "auto" and fast_gguf else None
    chosen = choose_backend(
        backend,
        gguf_only=weights_format(resolved.quantization) == "gguf",
        kind=resolved.kind,
        has_gguf=resolved.gguf is not None,
        has_adapters=bool(all_adapters),
        quantized=bool(resolved.quantization),
        fast_gguf=entry is not None,
    )
    options = {"speculative": check_speculative(speculative, chosen)} if speculative else {}
    use_fast_gguf(resolved, chosen, entry)
    runtime = plugins.get("backend", chosen)(
        resolved, adapters=list(adapters or []), threads=threads, **options
    )
    profile = resolved.profile
    return LoadedModel(
        name,
        runtime,
        defaults=profile.sampling() if profile else None,
        system=profile.system if profile else None,
        prompt=profile.prompt if profile else None,
    )


SPECULATIVE = ("prompt-lookup",)


def check_speculative(speculative: str, chosen: str) -> str:
    """A known speculative-decoding method on a backend that has it (llama.cpp)."""
    if speculative not in SPECULATIVE:
        raise InvalidInputError(
            f"unknown speculative method {speculative!r} (choose from {', '.join(SPECULATIVE)})"
        )
    if chosen != "llama_cpp":
        raise InvalidInputError(
            f"--speculative {speculative} runs on the llama.cpp backend; this model loads on {chosen} "
            "(adapters and quantized torch weights need transformers)"
        )
    return speculative
