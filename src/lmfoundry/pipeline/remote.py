"""A model behind an OpenAI-compatible endpoint (`lmf serve`, vLLM), usable where a `LoadedModel`
is: `generate(prompt_or_messages, params)`, `count_tokens`, `context_length`.

This is the remote backend of the scale-out story: pointing a stage's `url` at a vLLM server
changes where generation runs, not the code that asks. Token counts for context budgeting use a
local tokenizer of the same base model when one is given (exact), else a conservative estimate.
"""

from __future__ import annotations

import time
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.generate.engine import GenerationResult
from lmfoundry.plugins import require
from lmfoundry.types import Message, SamplingParams


class RemoteModel:
    backend = "remote"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        tokenizer: Any = None,
        context_length: int = 2048,
        timeout_s: float = 300.0,
    ) -> None:
        openai = require("openai", extra="client")
        url = base_url.rstrip("/")
        self.client = openai.OpenAI(
            base_url=url if url.endswith("/v1") else url + "/v1",
            api_key=api_key or "not-needed",
            timeout=timeout_s,
            max_retries=1,
        )
        self.name = model
        self.tokenizer = tokenizer
        self.context_length = context_length

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(text, add_special_tokens=False))
        return len(text) // 2 + 1  # bytes-ish upper bound: never overfills the context

    def has_chat_template(self) -> bool:
        """The server renders chat requests with its model's template (and says so if it has none)."""
        return True

    def count_prompt_tokens(self, prompt: str | list[Message]) -> int:
        if isinstance(prompt, str):
            return self.count_tokens(prompt)
        return sum(self.count_tokens(m.content) + 8 for m in prompt)  # + role and template markup

    def generate(
        self, prompt: str | list[Message], params: SamplingParams | None = None, **overrides: Any
    ) -> Any:
        params = (params or SamplingParams()).replace(**overrides)
        common: dict[str, Any] = {
            "model": self.name,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "stop": list(params.stop) or None,
            "seed": params.seed,
        }
        started = time.perf_counter()
        try:
            if isinstance(prompt, str):
                response = self.client.completions.create(prompt=prompt, **common)
                text = response.choices[0].text or ""
            else:
                messages = [{"role": m.role, "content": m.content} for m in prompt]
                response = self.client.chat.completions.create(messages=messages, **common)  # type: ignore[arg-type]
                text = response.choices[0].message.content or ""
        except Exception as exc:  # the openai package raises its own hierarchy
            raise LmfError(f"endpoint {self.client.base_url} ({self.name}) failed: {exc}") from exc
        elapsed = time.perf_counter() - started
        usage = response.usage
        return GenerationResult(
            text=text,
            prompt_tokens=int(usage.prompt_tokens) if usage else 0,
            completion_tokens=int(usage.completion_tokens) if usage else 0,
            finish_reason=str(response.choices[0].finish_reason or "stop"),
            ttft_s=elapsed,
            total_s=elapsed,
            backend=self.backend,
        )
