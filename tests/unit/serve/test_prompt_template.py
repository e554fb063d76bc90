"""The server's `prompt_template` extension: a request rendered with a template answers exactly as
the engine does on the same rendered prompt; bad uses are 400s naming the field."""

from __future__ import annotations

from typing import Any

from lmfoundry.generate.engine import LoadedModel
from lmfoundry.prompts.apply import render_conversation, render_input
from lmfoundry.prompts.registry import resolve_prompt
from lmfoundry.types import Message

QUESTION = "What is the capital of France?"


def test_chat_request_with_a_template_matches_the_engine(client: Any, tiny_model: LoadedModel) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": QUESTION}], "temperature": 0,
            "max_tokens": 8, "prompt_template": "closed-book-qa"}  # fmt: skip
    reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    ref = resolve_prompt("closed-book-qa")
    rendered = render_conversation(ref, [Message("user", QUESTION)])
    expected = tiny_model.generate(rendered, temperature=0, max_new_tokens=8, stop=tuple(ref.template.stop))
    # the server drops a trailing U+FFFD (a character the token limit cut in half); the engine keeps it
    assert reply.json()["choices"][0]["message"]["content"] == expected.text.rstrip("\ufffd")
    plain = client.post(
        "/v1/chat/completions", json={k: v for k, v in body.items() if k != "prompt_template"}
    )
    assert plain.json()["usage"]["prompt_tokens"] < reply.json()["usage"]["prompt_tokens"]


def test_completion_request_with_a_template_matches_the_engine(client: Any, tiny_model: LoadedModel) -> None:
    body = {
        "model": "tiny",
        "prompt": QUESTION,
        "temperature": 0,
        "max_tokens": 8,
        "prompt_template": "instruct",
    }
    reply = client.post("/v1/completions", json=body)
    assert reply.status_code == 200, reply.text
    prompt, stop = render_input(resolve_prompt("instruct"), QUESTION, chat=tiny_model.has_chat_template())
    expected = tiny_model.generate(prompt, temperature=0, max_new_tokens=8, stop=stop)
    assert reply.json()["choices"][0]["text"] == expected.text.rstrip("\ufffd")


def test_bad_template_uses_are_400s_naming_the_field(client: Any) -> None:
    chat = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "prompt_template": "no-such-prompt",
    }
    unknown = client.post("/v1/chat/completions", json=chat)
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "prompt_template"
    assert "no-such-prompt" in unknown.json()["error"]["message"]
    ids = client.post(
        "/v1/completions", json={"model": "tiny", "prompt": [1, 2, 3], "prompt_template": "instruct"}
    )
    assert ids.status_code == 400 and "text prompts" in ids.json()["error"]["message"]
    path = client.post(
        "/v1/completions", json={"model": "tiny", "prompt": "x", "prompt_template": "/etc/x.yaml"}
    )
    assert path.status_code == 400 and "not a file" in path.json()["error"]["message"]
