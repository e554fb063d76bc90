"""Render a Hugging Face style Jinja chat template (for backends without a transformers tokenizer)."""

from __future__ import annotations

from typing import Any

from lmfoundry.types import Message


def render_chat(
    template: str,
    messages: list[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    tools: list[dict[str, Any]] | None = None,
) -> str:
    """Render `messages` with the assistant cue appended, as transformers' apply_chat_template does."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=[m.to_dict() for m in messages],
        add_generation_prompt=True,
        bos_token=bos_token,
        eos_token=eos_token,
        tools=tools,
    )
