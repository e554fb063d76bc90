"""`lmf data make` and `lmf data inspect`, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfoundry.cli.main import main


def test_make_writes_default_dir_and_prints_sizes(lmf_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "make", "dialogsum-synthetic", "--n", "50", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    folder = lmf_home / "data" / "dialogsum-synthetic"
    for split, size in (("train", 40), ("validation", 5), ("test", 5)):
        assert sum(1 for _ in (folder / f"{split}.jsonl").open()) == size
        assert f"{split}" in out and f"{size} records" in out
    assert (folder / "README.md").is_file()


def test_make_json_custom_out_and_fractions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "set"
    argv = [
        "data",
        "make",
        "dialogsum-synthetic",
        "--n",
        "20",
        "--out",
        str(out_dir),
        "--fractions",
        "0.5,0.5",
        "--json",
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {
        "name": "dialogsum-synthetic",
        "dir": str(out_dir),
        "splits": {"train": 10, "validation": 10},
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["data", "make", "nope"],
            "unknown data set 'nope' (known: dialogsum-synthetic, preferences-synthetic)",
        ),
        (["data", "make", "dialogsum-synthetic", "--fractions", "a,b"], "--fractions must be"),
        (["data", "make", "dialogsum-synthetic", "--fractions", "0.9,0.9"], "fractions must be"),
        (["data", "inspect", "missing.jsonl"], "data file not found"),
        (["data", "inspect", "dialogsum-synthetic"], "lmf data make dialogsum-synthetic"),
    ],
)
def test_errors_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_inspect_without_tokenizer_shows_examples_and_word_stats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "make", "dialogsum-synthetic", "--n", "30"]) == 0
    capsys.readouterr()
    assert main(["data", "inspect", "dialogsum-synthetic", "-n", "2", "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert out.count("### Instruct: Summarize the dialogue below.") == 2
    assert "example 2" in out and "example 3" not in out
    assert "format summarization" in out and "template summarize" in out and "length in words" in out


def test_inspect_with_tokenizer_counts_tokens(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tiny import build_tokenizer

    rows = [{"instruction": "Repeat.", "input": "", "output": "word " * k} for k in (1, 5, 40)]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = build_tokenizer()
    lengths = []
    for row in rows:
        prompt = f"Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{row['instruction']}\n\n### Response:\n"
        lengths.append(len(tok(prompt)["input_ids"]) + len(tok(row["output"])["input_ids"]) + 1)
    limit = sorted(lengths)[1]
    argv = [
        "data",
        "inspect",
        str(path),
        "--tokenizer",
        str(tiny_llama_dir),
        "--max-length",
        str(limit),
        "--json",
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["format"] == "instruction" and result["template"] == "alpaca"
    assert result["stats"] == {
        "unit": "tokens",
        "min": min(lengths),
        "mean": pytest.approx(sum(lengths) / 3),
        "p95": max(lengths),
        "max": max(lengths),
        "max_length": limit,
        "n_over_max_length": 1,
    }
    assert len(result["examples"]) == 3 and result["examples"][0]["completion"] == "word "

    # the default maximum length comes from the model config (max_position_embeddings=256)
    assert main(["data", "inspect", str(path), "--tokenizer", str(tiny_llama_dir), "--template", "chat"]) == 0
    out = capsys.readouterr().out
    assert "<|im_start|>user" in out and "256" in out and "length in tokens" in out


def test_data_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data"]) == 0
    assert "inspect" in capsys.readouterr().out
