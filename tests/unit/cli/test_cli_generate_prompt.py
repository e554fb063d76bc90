"""`lmf generate --prompt`, `lmf chat --prompt` and a profile's `prompt:` put the input into a template."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lmfoundry
from lmfoundry.cli.main import main
from lmfoundry.prompts.apply import render_conversation, render_input
from lmfoundry.prompts.registry import resolve_prompt
from lmfoundry.types import Message

QUESTION = "What is the capital of France?"


def test_generate_with_a_template_answers_as_the_engine_does(
    tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["generate", str(tiny_llama_dir), QUESTION, "--prompt", "closed-book-qa", "--json",
            "--temperature", "0", "--max-new-tokens", "6"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    model = lmfoundry.load(str(tiny_llama_dir))
    prompt, stop = render_input(resolve_prompt("closed-book-qa"), QUESTION, chat=True)
    expected = model.generate(prompt, temperature=0, max_new_tokens=6, stop=stop)
    assert printed["text"] == expected.text and printed["prompt_tokens"] == expected.prompt_tokens


def test_a_profile_prompt_applies_and_an_unknown_template_is_one_line(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "qa.yaml"
    profile.write_text(f"base: {tiny_llama_dir}\nprompt: closed-book-qa\n")
    assert main(["models", "create", "qa", "-f", str(profile)]) == 0
    capsys.readouterr()
    assert main(["generate", "qa", QUESTION, "--json", "--temperature", "0", "--max-new-tokens", "4"]) == 0
    with_profile = json.loads(capsys.readouterr().out)
    assert main(["generate", str(tiny_llama_dir), QUESTION, "--prompt", "closed-book-qa", "--json",
                 "--temperature", "0", "--max-new-tokens", "4"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["text"] == with_profile["text"]
    assert main(["generate", str(tiny_llama_dir), "hi", "--prompt", "nope"]) == 1
    assert "no built-in prompt 'nope'" in capsys.readouterr().err


def test_chat_applies_the_template_to_every_turn(tiny_llama_dir: Path, tmp_path: Path) -> None:
    lmf = Path(sys.executable).parent / "lmf"
    argv = [str(lmf), "chat", str(tiny_llama_dir), "--prompt", "closed-book-qa", "--temperature", "0",
            "--max-new-tokens", "4"]  # fmt: skip
    done = subprocess.run(argv, input=f"{QUESTION}\n", capture_output=True, text=True, timeout=300,
                          env={**os.environ, "LMF_HOME": str(tmp_path)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    model = lmfoundry.load(str(tiny_llama_dir))
    ref = resolve_prompt("closed-book-qa")
    conversation = render_conversation(ref, [Message("user", QUESTION)])
    expected = model.generate(conversation, temperature=0, max_new_tokens=4, stop=tuple(ref.template.stop))
    assert done.stdout.strip() == expected.text.strip()
