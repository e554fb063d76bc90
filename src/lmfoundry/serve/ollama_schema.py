"""Request schemas of the Ollama-compatible endpoints (`/api/...`), with Ollama's own field names.

Same policy as the OpenAI schemas (schema.py): unknown fields and options are a 400 naming them.
Options Ollama clients send routinely but that change nothing here (memory and threading knobs,
`keep_alive`, `num_ctx` up to our context) are accepted and ignored; options we cannot honour
(mirostat, typical_p, ...) are accepted only at the value that turns them off, so an answer never
quietly ignores what the client asked for. Ranges of the sampling options are checked by the
OpenAI request each one is mapped to (ollama_format.py), so the two APIs cannot disagree.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_NUM_PREDICT_SPECIAL = (-1, -2)
"""Ollama's "until EOS" (-1) and "fill the context" (-2): both mean the server's --max-tokens here."""
IGNORED_OPTIONS = frozenset(
    {
        "num_ctx",
        "num_keep",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
        "numa",
        "low_vram",
        "f16_kv",
        "use_mmap",
        "use_mlock",
        "vocab_only",
        "logits_all",
        "embedding_only",
        "penalize_newline",
    }
)
"""Options accepted and ignored: loading, memory and threading knobs that cannot change an answer."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _only(value: Any, accepted: tuple[Any, ...], name: str, why: str) -> Any:
    """`value` if it is None or one of `accepted`, else a validation error naming the option."""
    if value is not None and value not in accepted:
        raise ValueError(
            f"{name}={value!r} is not supported by this server ({why}; accepted: {accepted[0]!r})"
        )
    return value


class OllamaOptions(_Strict):
    """Ollama's `options` (Modelfile parameters). None means unset (clients send nulls)."""

    # mapped onto our sampling parameters
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    num_predict: int | None = Field(default=None, ge=-2)
    stop: list[str] | str | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    # accepted and ignored: loading, memory and threading knobs that cannot change an answer
    num_ctx: int | None = Field(default=None, ge=1)
    num_keep: int | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    main_gpu: int | None = None
    num_thread: int | None = None
    numa: bool | None = None
    low_vram: bool | None = None
    f16_kv: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    vocab_only: bool | None = None
    logits_all: bool | None = None
    embedding_only: bool | None = None
    penalize_newline: bool | None = None
    """Deprecated in Ollama itself, which ignores it too."""
    # accepted only at the value that turns them off
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    typical_p: float | None = None
    tfs_z: float | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value: float | None, info: Any) -> float | None:
        return _only(value, (0, 0.0), f"options.{info.field_name}", "not implemented")

    @field_validator("typical_p", "tfs_z")
    @classmethod
    def _no_filter(cls, value: float | None, info: Any) -> float | None:
        return _only(value, (1, 1.0), f"options.{info.field_name}", "not implemented")

    @field_validator("mirostat")
    @classmethod
    def _no_mirostat(cls, value: int | None) -> int | None:
        return _only(value, (0,), "options.mirostat", "mirostat sampling is not implemented")

    @model_validator(mode="after")
    def _check_repeat_window(self) -> OllamaOptions:
        """Our repetition penalty covers the whole context (Ollama's -1); another window is only
        harmless when no penalty is asked for."""
        penalized = self.repeat_penalty not in (None, 1, 1.0)
        if penalized and self.repeat_last_n not in (None, -1, 0):
            raise ValueError(
                f"options.repeat_last_n={self.repeat_last_n} is not supported with repeat_penalty: the "
                "penalty here covers the whole context (use -1, or 0 to turn the penalty off)"
            )
        return self

    def stops(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop


class _Generating(_Strict):
    """Fields `/api/generate` and `/api/chat` share."""

    model: str = Field(min_length=1)
    stream: bool = True
    """Ollama streams unless told otherwise."""
    format: Literal["", "json"] | dict[str, Any] | None = None
    """"json" or a JSON schema: enforced by constrained decoding."""
    options: OllamaOptions | None = None
    keep_alive: float | str | None = None
    """Accepted and ignored: `lmf serve` keeps its model loaded."""
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    @field_validator("think")
    @classmethod
    def _no_think(cls, value: bool | str | None) -> bool | str | None:
        return _only(value, (False,), "think", "no thinking mode")

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | None) -> bool | None:
        return _only(value, (False,), "logprobs", "use /v1/completions for log-probabilities")

    @field_validator("top_logprobs")
    @classmethod
    def _no_top_logprobs(cls, value: int | None) -> int | None:
        return _only(value, (0,), "top_logprobs", "use /v1/completions for log-probabilities")

    def unloads(self) -> bool:
        """An empty request with keep_alive 0 asks Ollama to unload the model."""
        return self.keep_alive in (0, "0", "0s", "0m")


def _no_images(value: list[str] | None) -> list[str] | None:
    if value:
        raise ValueError("images are not supported (the served models are text-only)")
    return value


Images = Annotated[list[str] | None, AfterValidator(_no_images)]


class GenerateRequest(_Generating):
    prompt: str | None = None
    system: str | None = None
    raw: bool = False
    """The prompt as is, without the chat template (what /v1/completions does)."""
    suffix: str | None = None
    template: str | None = None
    context: list[int] | None = None
    images: Images = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None

    @field_validator("suffix", "template", "context")
    @classmethod
    def _check_unsupported(cls, value: Any, info: Any) -> Any:
        why = {
            "suffix": "fill-in-the-middle is not implemented",
            "template": "the model's own chat template is used, or none with raw=true",
            "context": "deprecated in Ollama; send the conversation to /api/chat",
        }[info.field_name]
        return _only(value or None, (None,), info.field_name, why)

    @field_validator("width", "height", "steps")
    @classmethod
    def _no_images_out(cls, value: int | None, info: Any) -> int | None:
        return _only(value, (None,), info.field_name, "image generation is not implemented")


class OllamaFunction(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class OllamaToolCall(BaseModel):
    """A call an assistant turn made, as Ollama writes it (arguments as an object, not a string)."""

    model_config = ConfigDict(extra="allow")
    function: OllamaFunction
    id: str | None = None


class OllamaMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    images: Images = None
    thinking: str | None = None
    """Accepted in history and dropped (no thinking mode here)."""
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class ChatRequest(_Generating):
    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class EmbedRequest(_Strict):
    model: str = Field(min_length=1)
    input: str | list[str]
    truncate: bool = True
    options: OllamaOptions | None = None
    keep_alive: float | str | None = None
    dimensions: int | None = None
    """Passed on to the /v1/embeddings request, which refuses it (the embedder's size is used)."""


class EmbeddingsRequest(_Strict):
    """The legacy `/api/embeddings` (one prompt, one vector)."""

    model: str = Field(min_length=1)
    prompt: str
    options: OllamaOptions | None = None
    keep_alive: float | str | None = None


class ShowRequest(_Strict):
    model: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1)
    """The old spelling of `model`, still sent by some clients."""
    verbose: bool = False

    @model_validator(mode="after")
    def _check_model(self) -> ShowRequest:
        if not (self.model or self.name):
            raise ValueError("missing required field 'model'")
        return self

    def model_name(self) -> str:
        return str(self.model or self.name)
