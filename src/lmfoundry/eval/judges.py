"""Judge backends: anything with `complete(prompt, seed=...) -> str`.

A local model (`GeneratorJudge` over `lmfoundry.load(...)`), an OpenAI-compatible endpoint
(`OpenAIJudge`), a plugin's judge, or a rule in a test. `make_judge` turns a `--judge` spec into
one: an http(s) URL is an endpoint, `NAME:ARG` a registered `judge` plugin, anything else a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from lmfoundry import plugins
from lmfoundry.errors import LmfError
from lmfoundry.eval.judge_format import MIN_REASON_TOKENS, AnswerFormat
from lmfoundry.generate.engine import load_model
from lmfoundry.plugins import require
from lmfoundry.types import Message, SamplingParams


class JudgeBackend(Protocol):
    """Turns a judging prompt into the judge's raw text."""

    def complete(self, prompt: str, *, seed: int) -> str: ...


class StructuredJudge(Protocol):
    """A judge that can be held to an answer format (`structured = True`): its replies always parse."""

    structured: bool

    def complete(self, prompt: str, *, seed: int, answer: AnswerFormat | None = None) -> str: ...


def complete_judgment(judge: JudgeBackend, prompt: str, *, seed: int, answer: AnswerFormat) -> str:
    """Ask `judge`, in the structured answer format when it supports one."""
    if getattr(judge, "structured", False):
        return str(judge.complete(prompt, seed=seed, answer=answer))  # type: ignore[call-arg]
    return judge.complete(prompt, seed=seed)


@dataclass
class GeneratorJudge:
    """A judge backed by anything with `generate(prompt, params)` (e.g. `lmfoundry.load(...)`).

    The prompt goes through the chat template when the model has one (instruction-tuned judges
    expect it) and as raw text otherwise. With an answer format the reply is decoded under its
    grammar, so it is always the JSON the parsers expect.
    """

    model: Any
    params: SamplingParams = field(
        default_factory=lambda: SamplingParams(temperature=0.0, max_new_tokens=128)
    )
    structured: bool = True

    def complete(self, prompt: str, *, seed: int, answer: AnswerFormat | None = None) -> str:
        tokenizer = getattr(self.model, "tokenizer", None)
        chat = bool(getattr(tokenizer, "chat_template", None)) or bool(
            getattr(self.model, "has_chat_template", lambda: False)()
        )
        request: str | list[Message] = [Message("user", prompt)] if chat else prompt
        params = self.params.replace(seed=seed)
        if answer is not None:
            frame = self.model.count_tokens(answer.frame()) + 2  # +2: EOS, and BOS if counted
            reason = max(MIN_REASON_TOKENS, params.max_new_tokens - frame)
            params = params.replace(constraint=answer.constraint(reason), max_new_tokens=frame + reason)
        return str(self.model.generate(request, params).text)


@dataclass
class OpenAIJudge:
    """A judge behind an OpenAI-compatible chat endpoint (vLLM, `lmf serve`, OpenAI itself)."""

    base_url: str
    model: str = "default"
    api_key: str = "not-needed"
    temperature: float = 0.0
    max_tokens: int = 256
    timeout_s: float = 120.0
    max_retries: int = 2
    structured: bool = True
    _client: Any = field(default=None, init=False, repr=False)

    def complete(self, prompt: str, *, seed: int, answer: AnswerFormat | None = None) -> str:
        if self._client is None:
            openai = require("openai", extra="client")
            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self.api_key,
                timeout=self.timeout_s,
                max_retries=self.max_retries,
            )
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                seed=seed,
                **_response_format(answer),
            )
        except Exception as exc:  # the openai package raises its own hierarchy
            raise LmfError(f"judge endpoint {self.base_url} failed: {exc}") from exc
        return response.choices[0].message.content or ""


def _response_format(answer: AnswerFormat | None) -> dict[str, Any]:
    if answer is None:
        return {}
    schema = {"name": f"judge_{answer.field}", "schema": answer.json_schema(), "strict": True}
    return {"response_format": {"type": "json_schema", "json_schema": schema}}


def make_judge(spec: str, params: SamplingParams, *, judge_model: str = "default") -> JudgeBackend:
    """The judge a `--judge` spec names: an http(s) URL is an OpenAI-compatible endpoint (asked for
    `judge_model`), `NAME:ARG` a registered `judge` plugin, anything else a model to load."""
    if spec.startswith(("http://", "https://")):
        return openai_judge(spec, params, judge_model)
    name, arg = plugins.parse_spec(spec)
    if arg and name in plugins.names("judge"):
        factory = plugins.get("judge", name)
        judge: JudgeBackend = factory(arg, params, judge_model)
        return judge
    return model_judge(spec, params, judge_model)


def model_judge(model: str, params: SamplingParams, judge_model: str = "default") -> GeneratorJudge:
    """The `model` judge plugin: a model loaded with `lmfoundry.load` (judge_model is unused)."""
    return GeneratorJudge(load_model(model), params)


def openai_judge(url: str, params: SamplingParams, judge_model: str = "default") -> OpenAIJudge:
    """The `openai` judge plugin: an OpenAI-compatible endpoint at `url`, asked for `judge_model`."""
    return OpenAIJudge(
        url, model=judge_model, temperature=params.temperature, max_tokens=params.max_new_tokens
    )
