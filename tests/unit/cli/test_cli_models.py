"""CLI in-process: models and generate commands, JSON output, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfoundry.cli.main import main


def _json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_models_pull_show_list_rm(tiny_qwen2_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "pull", str(tiny_qwen2_dir), "--name", "tq", "--json"]) == 0
    assert _json(capsys)["architecture"] == "Qwen2ForCausalLM"
    assert main(["models", "show", "tq", "--json"]) == 0
    shown = _json(capsys)
    assert {
        "architecture",
        "parameters",
        "context_length",
        "dtype",
        "size_bytes",
        "chat_template",
        "license",
    } <= set(shown)
    assert main(["models", "show", "tq"]) == 0
    assert "context length" in capsys.readouterr().out
    assert main(["models", "list", "--json"]) == 0
    assert "tq" in {m["name"] for m in _json(capsys)["models"]}
    assert main(["models", "rm", "tq"]) == 0


def test_generate_json_has_the_documented_fields(
    tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["generate", str(tiny_llama_dir), "Hello", "--json", "--temperature", "0", "--max-new-tokens", "5"]
    )
    assert code == 0
    out = _json(capsys)
    assert {"text", "prompt_tokens", "completion_tokens", "ttft_s", "tokens_per_s", "backend"} <= set(out)
    assert out["backend"] == "transformers" and 1 <= out["completion_tokens"] <= 5
    main(["generate", str(tiny_llama_dir), "Hello", "--json", "--temperature", "0", "--max-new-tokens", "5"])
    assert _json(capsys)["text"] == out["text"]  # greedy is reproducible


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["generate", "no-such-model", "hi"], "unknown model"),
        (["generate", "smollm2-135m-instruct", "hi", "--top-p", "2"], "top_p"),
        (["generate", "smollm2-135m-instruct", "hi", "--temperature", "-1"], "temperature"),
        (["generate", "/no/such/file.gguf", "hi"], "not found"),
        (["models", "show", "not-pulled"], "not in the store"),
        (["models", "rm", "../../etc"], "invalid model name"),
        (["models", "create", "x", "-f", "/no/such.yaml"], "not found"),
    ],
)
def test_bad_input_is_one_line_error(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmf: error:") and needle in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_chat_keeps_history(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n/reset\nagain\n/exit\n"))
    assert (
        main(
            [
                "chat",
                str(tiny_llama_dir),
                "--temperature",
                "0",
                "--max-new-tokens",
                "4",
                "--backend",
                "transformers",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.count("\n") >= 2
