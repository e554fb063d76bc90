"""The packaged SmolLM2 answers offline on both backends, through the CLI and the Python API."""

from __future__ import annotations

import json

import pytest

import lmfoundry
from lmfoundry.cli.main import main
from lmfoundry.types import Message

QUESTION = "What is the capital of France?"


@pytest.mark.parametrize(
    ("backend", "prompt", "raw"),
    [
        ("auto", QUESTION, False),
        ("transformers", QUESTION, False),
        ("llama_cpp", "The capital of France is", True),
    ],
)
def test_cli_generate_json_answers_paris(
    backend: str, prompt: str, raw: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "generate",
        "smollm2-135m-instruct",
        prompt,
        "--json",
        "--temperature",
        "0",
        "--max-new-tokens",
        "24",
    ]
    code = main([*argv, "--backend", backend, *(["--raw"] if raw else [])])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "Paris" in out["text"]
    assert out["backend"] == ("llama_cpp" if backend == "auto" else backend)  # auto: the float16 GGUF
    assert out["completion_tokens"] > 0 and out["ttft_s"] > 0


def test_backends_agree_on_prompt_tokens_and_a_raw_greedy_continuation() -> None:
    answers, chat_ids = {}, {}
    for backend in ("transformers", "llama_cpp"):
        model = lmfoundry.load("smollm2-135m-instruct", backend=backend)
        chat_ids[backend] = model.prompt_ids([Message("user", QUESTION)])
        answers[backend] = model.generate("The capital of France is", temperature=0, max_new_tokens=8).text
    # Same chat template, same tokenizer: identical prompt ids. The GGUF is Q4_1 and the transformers
    # copy its fp32 dequantization, so a clear-cut greedy continuation agrees at the start.
    assert chat_ids["transformers"] == chat_ids["llama_cpp"]
    assert answers["transformers"].split()[:2] == answers["llama_cpp"].split()[:2], answers


def test_auto_runs_the_float16_gguf_and_decodes_like_fp32() -> None:
    """The fast default path keeps fp32's greedy output (docs/benchmarks.md, "Fast default path")."""
    fast = lmfoundry.load("smollm2-135m-instruct")
    assert fast.backend == "llama_cpp"
    assert fast.runtime.llm.model_path.endswith("model-f16.gguf")  # type: ignore[attr-defined]
    reference = lmfoundry.load("smollm2-135m-instruct", backend="transformers")
    for prompt in ([Message("user", QUESTION)], "The capital of France is"):
        want = reference.generate(prompt, temperature=0, max_new_tokens=24)
        got = fast.generate(prompt, temperature=0, max_new_tokens=24)
        assert got.token_ids == want.token_ids, (got.text, want.text)


def test_show_reports_the_packaged_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "show", "smollm2-135m-instruct", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "LlamaForCausalLM"
    assert 130e6 < info["parameters"] < 140e6
    assert (
        info["context_length"] == 8192 and info["chat_template"] is True and info["license"] == "Apache-2.0"
    )
