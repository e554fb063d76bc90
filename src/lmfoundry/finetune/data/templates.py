"""Prompt templates: turn a record into (prompt_text, completion_text).

Templates:

- ``summarize``: the Alpaca-style summarization layout (intro line, ``### Instruct: ...``, the
  dialogue, ``### Output:`` + summary, ``### End``; parts joined by blank lines). At inference
  the prompt ends right after ``### Output:\\n`` and generation stops at ``### End``.
- ``alpaca``: the Stanford Alpaca instruction layout (``### Instruction:`` / ``### Input:`` /
  ``### Response:``).
- ``plain``: no markup; instruction and input separated by blank lines (base models, and
  ``text`` records for continued pre-training, whose prompt is empty).
- ``chat``: the model's own chat template via ``tokenizer.apply_chat_template``.
- ``auto``: summarize for summarization, alpaca for instruction and preference, chat for chat,
  plain for text.

A record without its target (no ``summary`` / ``output`` / final assistant turn) renders an
empty completion, so the same function builds inference prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.finetune.data.formats import detect_format
from lmfoundry.generate.tools import fallback_messages, message_from_dict, tool_spec

SUMMARY_INTRO = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
SUMMARY_INSTRUCTION = "Summarize the dialogue below."
INSTRUCT_KEY = "### Instruct:"
OUTPUT_KEY = "### Output:"
END_KEY = "### End"

ALPACA_INTRO = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
ALPACA_INTRO_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request."
)

# Text a model trained on each template emits when its answer is done (for `stop=`).
STOP_SEQUENCES: dict[str, list[str]] = {
    "summarize": ["###"],  # every section marker of the template starts with ###
    "alpaca": ["### Instruction:"],
    "plain": [],
    "chat": [],
}
AUTO = {
    "summarization": "summarize",
    "instruction": "alpaca",
    "preference": "alpaca",
    "chat": "chat",
    "text": "plain",
}


def _task(record: Mapping[str, Any], fmt: str, template: str) -> tuple[str, str, str]:
    """(instruction, input, output) of a summarization, instruction or preference record."""
    if fmt == "summarization":
        return SUMMARY_INSTRUCTION, record["dialogue"], record.get("summary") or ""
    if fmt == "instruction":
        return record["instruction"], record.get("input") or "", record.get("output") or ""
    if fmt == "preference":
        if not isinstance(record["prompt"], str):
            raise LmfError(f"template {template!r} needs a text 'prompt'; use the chat template for messages")
        chosen = record.get("chosen") or ""
        return record["prompt"], "", chosen if isinstance(chosen, str) else _last_content(chosen)
    raise LmfError(f"template {template!r} cannot render {fmt} records (use {AUTO[fmt]!r})")


def _last_content(messages: list[Mapping[str, Any]]) -> str:
    return str(messages[-1]["content"]) if messages else ""


def summarize(record: Mapping[str, Any], fmt: str, tokenizer: Any = None) -> tuple[str, str]:
    instruction, context, output = _task(record, fmt, "summarize")
    parts = [SUMMARY_INTRO, f"{INSTRUCT_KEY} {instruction}"] + ([context] if context else []) + [OUTPUT_KEY]
    completion = f"{output}\n\n{END_KEY}" if output else ""
    return "\n\n".join(parts) + "\n", completion


def alpaca(record: Mapping[str, Any], fmt: str, tokenizer: Any = None) -> tuple[str, str]:
    instruction, context, output = _task(record, fmt, "alpaca")
    if context:
        prompt = f"{ALPACA_INTRO_WITH_INPUT}\n\n### Instruction:\n{instruction}\n\n### Input:\n{context}\n\n### Response:\n"
    else:
        prompt = f"{ALPACA_INTRO}\n\n### Instruction:\n{instruction}\n\n### Response:\n"
    return prompt, output


def plain(record: Mapping[str, Any], fmt: str, tokenizer: Any = None) -> tuple[str, str]:
    if fmt == "text":
        return "", record["text"]
    if fmt == "chat":
        messages = list(record["messages"])
        target = _last_content(messages) if messages[-1]["role"] == "assistant" else ""
        history = messages[:-1] if target else messages
        lines = [f"{m['role']}: {m['content']}" for m in history]
        return "\n".join(lines) + "\nassistant: ", target
    instruction, context, output = _task(record, fmt, "plain")
    return "\n\n".join([instruction] + ([context] if context else [])) + "\n\n", output


def _as_messages(record: Mapping[str, Any], fmt: str, tokenizer: Any = None) -> list[dict[str, Any]]:
    if fmt == "chat" and _uses_tools(record) and not _template_renders_tools(tokenizer):
        return _fallback_tool_messages(record)
    if fmt == "chat":
        return [dict(m) for m in record["messages"]]
    if fmt == "preference" and isinstance(record["prompt"], list):
        chosen = record.get("chosen")
        tail = (
            chosen
            if isinstance(chosen, list)
            else [{"role": "assistant", "content": chosen}]
            if chosen
            else []
        )
        return [dict(m) for m in record["prompt"]] + [dict(m) for m in tail]
    instruction, context, output = _task(record, fmt, "chat")
    messages = [{"role": "user", "content": f"{instruction}\n\n{context}" if context else instruction}]
    return messages + ([{"role": "assistant", "content": output}] if output else [])


def chat(record: Mapping[str, Any], fmt: str, tokenizer: Any = None) -> tuple[str, str]:
    """The model's own chat template; the completion is the final assistant turn as rendered."""
    if tokenizer is None:
        raise LmfError("the chat template needs a tokenizer (pass --tokenizer MODEL)")
    if not getattr(tokenizer, "chat_template", None):
        raise LmfError("this tokenizer has no chat template; use --template summarize, alpaca or plain")
    messages = _as_messages(record, fmt, tokenizer)
    tools = record.get("tools") if fmt == "chat" and _template_renders_tools(tokenizer) else None
    if messages[-1]["role"] != "assistant":
        return tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=True
        ), ""
    prompt = tokenizer.apply_chat_template(
        messages[:-1], tools=tools, tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    if not full.startswith(prompt):
        raise LmfError(
            "the chat template renders the history differently once the answer is added, so the "
            "prompt cannot be masked exactly; use --template summarize, alpaca or plain"
        )
    return prompt, full[len(prompt) :]


def _uses_tools(record: Mapping[str, Any]) -> bool:
    messages = record["messages"]
    return bool(record.get("tools")) or any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)


def _template_renders_tools(tokenizer: Any) -> bool:
    return "tools" in str(getattr(tokenizer, "chat_template", None) or "")


def _fallback_tool_messages(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A function-calling conversation in the format inference prompts it in (generate/tools.py):
    tools described in the system turn, calls as `<tool_call>` lines, results as user turns; so a
    model tuned on these records is asked the same way at serving time."""
    turns = [message_from_dict(dict(m)) for m in record["messages"]]
    spec = tool_spec(record.get("tools"), "auto", True) if record.get("tools") else None
    return [{"role": m.role, "content": m.content} for m in fallback_messages(turns, spec)]


TEMPLATES: dict[str, Callable[..., tuple[str, str]]] = {
    "summarize": summarize,
    "alpaca": alpaca,
    "plain": plain,
    "chat": chat,
}


def template_names() -> list[str]:
    return [*TEMPLATES, "auto"]


def resolve_template(template_name: str, record: Mapping[str, Any]) -> str:
    """The concrete template `template_name` means for `record` ("auto" picks by format)."""
    if template_name == "auto":
        return AUTO[detect_format(record)]
    if template_name not in TEMPLATES:
        raise InvalidInputError(f"unknown template {template_name!r} (known: {', '.join(template_names())})")
    return template_name


def render(template_name: str, record: Mapping[str, Any], tokenizer: Any = None) -> tuple[str, str]:
    """(prompt_text, completion_text) of `record` under the named template."""
    fmt = detect_format(record)
    return TEMPLATES[resolve_template(template_name, record)](record, fmt, tokenizer)


def render_prompt(template_name: str, record: Mapping[str, Any], tokenizer: Any = None) -> str:
    """The inference prompt only (the record's target, if any, is left out)."""
    return render(template_name, record, tokenizer)[0]


def render_preference(
    template_name: str, record: Mapping[str, Any], tokenizer: Any = None
) -> tuple[str, str, str]:
    """(prompt, chosen, rejected) of a preference record, both answers rendered as completions."""
    if detect_format(record) != "preference":
        raise InvalidInputError("render_preference needs a {prompt, chosen, rejected} record")
    prompt, chosen = render(template_name, record, tokenizer)
    rejected_prompt, rejected = render(template_name, {**record, "chosen": record["rejected"]}, tokenizer)
    if rejected_prompt != prompt:
        raise LmfError("the chosen and rejected answers render different prompts")
    return prompt, chosen, rejected
