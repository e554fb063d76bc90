"""Rendering for a real model: chat form when it has a chat template, text when it has none, and
demonstrations trimmed (least relevant first) until prompt and answer fit the context."""

from __future__ import annotations

from pathlib import Path

from lmfoundry.generate.engine import LoadedModel
from lmfoundry.generate.hf_backend import TransformersBackend
from lmfoundry.prompts.registry import PromptRef
from lmfoundry.prompts.render import PromptRenderer
from lmfoundry.prompts.template import Demonstration, parse_prompt
from lmfoundry.types import Message

POOL = [Demonstration(f"dialogue number {i} " * 6, f"summary {i}") for i in range(6)]


def _model(path: Path, chat: bool) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if not chat:
        tokenizer.chat_template = None
    return LoadedModel("tiny", TransformersBackend(AutoModelForCausalLM.from_pretrained(path), tokenizer))


def _renderer(model: LoadedModel, budget: int, shots: int = 3) -> PromptRenderer:
    template = parse_prompt(
        {
            "name": "t",
            "instruction": "Summarize.",
            "shots": shots,
            "text_labels": {"input": "D:", "output": "S:"},
        }
    )
    return PromptRenderer(PromptRef(template, "builtin", "builtin"), chat=model.has_chat_template(),
                          count_tokens=model.count_prompt_tokens, budget=budget, pool=POOL)  # fmt: skip


def test_chat_template_models_get_messages_and_others_get_text(tiny_llama_dir: Path) -> None:
    chat = _model(tiny_llama_dir, chat=True)
    rendered = _renderer(chat, budget=10_000).render("hello there", "e1")
    assert isinstance(rendered.prompt, list) and rendered.prompt[-1] == Message(
        "user", "Summarize.\n\nhello there"
    )
    assert rendered.shots == 3 and rendered.stop == ()
    assert rendered.prompt_tokens == len(chat.prompt_ids(rendered.prompt))
    plain = _model(tiny_llama_dir, chat=False)
    text = _renderer(plain, budget=10_000).render("hello there", "e1")
    assert isinstance(text.prompt, str) and text.prompt.endswith("D:\nhello there\nS:")
    assert text.stop == ("\nD:",) and text.prompt.count("S: summary") == 3
    assert _renderer(plain, budget=10_000).describe()["form"] == "text"


def test_demonstrations_are_trimmed_to_the_budget_least_relevant_first(tiny_llama_dir: Path) -> None:
    model = _model(tiny_llama_dir, chat=False)
    full = _renderer(model, budget=10_000).render("hello there", "e1")
    zero = _renderer(model, budget=10_000, shots=0).render("hello there", "e1")
    budget = zero.prompt_tokens + (full.prompt_tokens - zero.prompt_tokens) // 2
    trimmed = _renderer(model, budget=budget).render("hello there", "e1")
    assert 0 < trimmed.shots < 3 and trimmed.prompt_tokens <= budget
    assert (
        isinstance(trimmed.prompt, str)
        and "summary 2" in trimmed.prompt
        and "summary 0" not in trimmed.prompt
    )
    hopeless = _renderer(model, budget=1).render("hello there", "e1")
    assert hopeless.shots == 0  # nothing else to drop: the engine reports a prompt that cannot fit
