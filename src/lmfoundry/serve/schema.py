"""Request schemas of the OpenAI endpoints we serve (pydantic, `extra="forbid"`).

Unknown fields are rejected with a 400 so typos never pass silently. Known OpenAI fields that we do
not implement are accepted only at their neutral value (`logprobs: false`, `presence_penalty: 0`,
`user: ...`) and ignored; a non-neutral value is a 400 saying it is unsupported, rather than an
answer that quietly ignores what the client asked for.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_STOP_SEQUENCES = 4
MAX_LOGPROBS = 5


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None


def _neutral(value: Any, neutral: tuple[Any, ...], field: str) -> Any:
    if value not in neutral:
        raise ValueError(f"{field}={value!r} is not supported by this server (accepted: {neutral[0]!r})")
    return value


class _Sampling(_Strict):
    """Fields shared by chat and text completions; top_k, min_p and repetition_penalty are extensions
    (vLLM accepts the same names)."""

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, lt=1.0)
    repetition_penalty: float | None = Field(default=None, ge=0.01, le=100.0)
    prompt_template: str | None = Field(default=None, min_length=1)
    """lmfoundry extension: a prompt template (NAME, NAME@VERSION) the request is rendered with."""
    # Accepted and ignored at their neutral values:
    user: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    store: bool | None = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty")
        return value

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _check_penalty(cls, value: float | None, info: Any) -> float | None:
        return _neutral(value, (0, 0.0, None), info.field_name)

    @field_validator("logprobs")
    @classmethod
    def _check_logprobs(cls, value: bool | int | None) -> bool | int | None:
        return _neutral(value, (False, None, 0), "logprobs")

    @field_validator("top_logprobs")
    @classmethod
    def _check_top_logprobs(cls, value: int | None) -> int | None:
        return _neutral(value, (None, 0), "top_logprobs")

    @field_validator("logit_bias")
    @classmethod
    def _check_logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value:
            raise ValueError("logit_bias is not supported by this server (accepted: {} or null)")
        return value

    @field_validator("store")
    @classmethod
    def _check_store(cls, value: bool | None) -> bool | None:
        return _neutral(value, (None, False), "store")

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: dict[str, Any] | None = None
    """text, json_object or json_schema: enforced by constrained decoding (checked in the handler)."""
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=0)
    """0 (with echo) scores the prompt without generating."""
    echo: bool = False
    """Return the prompt before the completion (with its token logprobs when `logprobs` is set)."""
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)  # type: ignore[assignment]
    """Return token log-probabilities with this many most likely alternatives per position."""
    suffix: str | None = None
    best_of: int | None = None

    @field_validator("logprobs", mode="before")
    @classmethod
    def _check_logprobs(cls, value: Any) -> Any:
        if isinstance(value, bool):  # the chat API's boolean, not the completions API's count
            raise ValueError("logprobs is a count of alternatives (0-5) for /v1/completions")
        return value

    @model_validator(mode="after")
    def _check_unsupported(self) -> CompletionRequest:
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens=0 only makes sense with echo=true (scoring the prompt)")
        if self.stream and (self.echo or self.logprobs is not None):
            raise ValueError("echo and logprobs are not supported with stream=true")
        if self.suffix:
            raise ValueError("suffix is not supported by this server")
        if self.best_of not in (None, self.n):
            raise ValueError("best_of must equal n (no server-side ranking)")
        if isinstance(self.prompt, list) and not self.prompt:
            raise ValueError("prompt must not be an empty list")
        if isinstance(self.prompt, list) and any(isinstance(p, list) and not p for p in self.prompt):
            raise ValueError("token-id prompts must not be empty lists")
        return self

    def prompts(self) -> list[str] | list[list[int]]:
        """The prompts as a list: texts, or token id lists."""
        p: Any = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, int) for x in p):
            return [list(p)]
        return list(p)

    def token_limit(self) -> int | None:
        return self.max_tokens


class EmbeddingRequest(_Strict):
    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    @field_validator("dimensions")
    @classmethod
    def _check_dimensions(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("dimensions is not supported (the embedder's native size is used)")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class AdapterRequest(_Strict):
    name: str = Field(min_length=1, max_length=64)
    path: str = Field(min_length=1)


class FeedbackRequest(_Strict):
    """A rating of one choice of a captured completion (turns captured traffic into DPO pairs)."""

    id: str = Field(min_length=1, max_length=100)
    index: int = Field(default=0, ge=0)
    rating: float = Field(ge=-1e6, le=1e6)


class BatchCreateRequest(_Strict):
    """`POST /v1/batches`: run every request line of an uploaded file in the background."""

    input_file_id: str = Field(min_length=1, max_length=200)
    endpoint: Literal["/v1/chat/completions", "/v1/completions"]
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
