"""Prompt templates: exact layouts, inference prompts, chat templates, errors."""

from __future__ import annotations

from typing import Any

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.finetune.data.templates import render, render_preference, render_prompt, resolve_template

DIALOGUE = "#Person1#: Can I book a table for two?\n#Person2#: Sure, for when?\n#Person1#: Friday at 7 pm."
SUMMARY = "#Person1# books a table for two on Friday at 7 pm."
RECORD = {"id": "x", "dialogue": DIALOGUE, "summary": SUMMARY, "topic": "restaurant"}
INTRO = "Below is an instruction that describes a task. Write a response that appropriately completes the request."


@pytest.fixture(scope="module")
def tok() -> Any:
    from tiny import build_tokenizer

    return build_tokenizer()


def test_summarize_layout_parts_and_order() -> None:
    prompt, completion = render("summarize", RECORD)
    parts = (prompt + completion).split("\n\n")
    assert parts == [
        INTRO,
        "### Instruct: Summarize the dialogue below.",
        DIALOGUE,
        f"### Output:\n{SUMMARY}",
        "### End",
    ]
    assert prompt.endswith("### Output:\n") and completion == f"{SUMMARY}\n\n### End"


def test_summarize_inference_prompt_has_no_summary() -> None:
    prompt = render_prompt("summarize", RECORD)
    assert prompt == render_prompt("summarize", {"dialogue": DIALOGUE})
    assert prompt.endswith("### Output:\n") and SUMMARY not in prompt
    assert render("summarize", {"dialogue": DIALOGUE})[1] == ""


def test_summarize_accepts_instruction_records() -> None:
    prompt, completion = render(
        "summarize", {"instruction": "Translate to French.", "input": "cat", "output": "chat"}
    )
    assert prompt == f"{INTRO}\n\n### Instruct: Translate to French.\n\ncat\n\n### Output:\n"
    assert completion == "chat\n\n### End"


def test_alpaca_with_and_without_input() -> None:
    prompt, completion = render("alpaca", {"instruction": "Add.", "input": "2 and 3", "output": "5"})
    assert prompt == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n"
    )
    assert completion == "5"
    prompt, _ = render("alpaca", {"instruction": "Say hi.", "input": "", "output": "hi"})
    assert prompt == f"{INTRO}\n\n### Instruction:\nSay hi.\n\n### Response:\n"
    prompt, completion = render("alpaca", RECORD)
    assert "### Instruction:\nSummarize the dialogue below.\n\n### Input:\n" + DIALOGUE in prompt
    assert completion == SUMMARY


def test_plain_template() -> None:
    assert render("plain", {"text": "Domain text."}) == ("", "Domain text.")
    assert render("plain", RECORD) == (f"Summarize the dialogue below.\n\n{DIALOGUE}\n\n", SUMMARY)
    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    assert render("plain", chat) == ("user: Hi\nassistant: ", "Hello")


def test_chat_template_matches_apply_chat_template(tok: Any) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    prompt, completion = render("chat", {"messages": messages}, tok)
    assert prompt == tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    assert prompt + completion == tok.apply_chat_template(messages, tokenize=False)
    assert completion.startswith("Hello!")


def test_chat_template_on_summarization_record(tok: Any) -> None:
    prompt, completion = render("chat", RECORD, tok)
    user = {"role": "user", "content": f"Summarize the dialogue below.\n\n{DIALOGUE}"}
    assert prompt == tok.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
    assert completion.startswith(SUMMARY)
    # no answer yet: the prompt asks the model to speak
    open_chat = {"messages": [{"role": "user", "content": "Hi"}]}
    assert render("chat", open_chat, tok) == (
        tok.apply_chat_template(open_chat["messages"], tokenize=False, add_generation_prompt=True),
        "",
    )


def test_chat_template_errors(tok: Any) -> None:
    with pytest.raises(LmfError, match="needs a tokenizer"):
        render("chat", RECORD)
    from tiny import build_tokenizer

    bare = build_tokenizer()
    bare.chat_template = None
    with pytest.raises(LmfError, match="no chat template"):
        render("chat", RECORD, bare)
    with pytest.raises(LmfError, match="cannot render text records"):
        render("chat", {"text": "x"}, tok)


def test_template_errors_and_auto() -> None:
    with pytest.raises(LmfError, match="unknown template 'fancy'.*summarize, alpaca, plain, chat, auto"):
        render("fancy", RECORD)
    with pytest.raises(LmfError, match="cannot render text records \\(use 'plain'\\)"):
        render("summarize", {"text": "x"})
    assert resolve_template("auto", RECORD) == "summarize"
    assert resolve_template("auto", {"instruction": "a", "output": "b"}) == "alpaca"
    assert resolve_template("auto", {"text": "a"}) == "plain"
    assert resolve_template("auto", {"messages": []}) == "chat"
    assert render("auto", RECORD) == render("summarize", RECORD)


def test_render_preference(tok: Any) -> None:
    record = {"prompt": "Greet me.", "chosen": "Hello!", "rejected": "No."}
    prompt, chosen, rejected = render_preference("alpaca", record)
    assert prompt == f"{INTRO}\n\n### Instruction:\nGreet me.\n\n### Response:\n"
    assert (chosen, rejected) == ("Hello!", "No.")
    conversational = {
        "prompt": [{"role": "user", "content": "Greet me."}],
        "chosen": [{"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "assistant", "content": "No."}],
    }
    prompt, chosen, rejected = render_preference("chat", conversational, tok)
    assert prompt == tok.apply_chat_template(
        conversational["prompt"], tokenize=False, add_generation_prompt=True
    )
    assert chosen.startswith("Hello!") and rejected.startswith("No.")
    with pytest.raises(LmfError, match="needs a \\{prompt, chosen, rejected\\} record"):
        render_preference("alpaca", RECORD)


TOOL_RECORD = {
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "add",
                "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
            },
        }
    ],
    "messages": [
        {"role": "user", "content": "Add 2"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "2"},
        {"role": "assistant", "content": "It is 2."},
    ],
}


def test_function_calling_records_render_as_inference_prompts_them(tok: Any, tiny_llama_dir: Any) -> None:
    """A template without tool support gets the fallback format, the same one `chat(tools=...)` and
    the server prompt with, so a model tuned on such records is asked the same way when serving."""
    import lmfoundry
    from lmfoundry.generate.tools import tool_spec
    from lmfoundry.types import Message

    call_turn = {**TOOL_RECORD, "messages": TOOL_RECORD["messages"][:2]}
    prompt, completion = render("chat", call_turn, tok)
    assert '"name": "add"' in prompt and "<tool_call>" in prompt  # tools described in the system turn
    assert completion.startswith('<tool_call>{"name": "add", "arguments": {"a": 2}}</tool_call>')
    model = lmfoundry.load(str(tiny_llama_dir), backend="transformers")
    served_prompt = model.tool_prompt_ids(
        [Message("user", "Add 2")], tool_spec(TOOL_RECORD["tools"], "auto", None)
    )
    assert model.tokenizer.decode(served_prompt) == prompt
    prompt, completion = render("chat", TOOL_RECORD, tok)
    assert "<tool_response>\n2\n</tool_response>" in prompt and completion.startswith("It is 2.")


def test_bad_function_calls_in_records_are_named() -> None:
    from lmfoundry.errors import InvalidInputError
    from lmfoundry.finetune.data.formats import validate_record

    bad = {
        "messages": [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "add", "arguments": "{oops"}}],
            }
        ]
    }
    with pytest.raises(InvalidInputError, match=r"tool_calls\[0\].function.arguments is not valid JSON"):
        validate_record(bad)
    with pytest.raises(InvalidInputError, match="'tools' must be a list"):
        validate_record({**TOOL_RECORD, "tools": [{"name": "add"}]})
    assert validate_record(TOOL_RECORD) == "chat"
