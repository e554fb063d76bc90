"""Task loading: built-in tasks, prompt layout, and clear errors for bad data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.eval.tasks import load_task


def test_dialogsum_reads_records_and_builds_the_alpaca_layout(dialogsum_dir: Path) -> None:
    task = load_task("dialogsum-synthetic", data_dir=dialogsum_dir)
    assert [e.id for e in task.examples] == ["d1", "d2", "d3"]
    first = task.examples[0]
    assert first.reference == "#Person2# will come to the party and bring cake."
    assert first.metadata["topic"] == "party"
    parts = task.prompt(first).split("\n\n")
    assert parts[1] == "### Instruct: Summarize the dialogue below."
    assert parts[2] == first.input
    assert parts[3] == "### Output:\n"  # the training prompt ends here; the model writes the summary next
    assert parts[0].strip() and "###" not in parts[0]
    assert task.metrics == ("rouge",)
    assert task.params.greedy


def test_dialogsum_default_dir_is_under_lmf_home(lmf_home: Path) -> None:
    with pytest.raises(LmfError, match=str(lmf_home / "data" / "dialogsum-synthetic")):
        load_task("dialogsum-synthetic")
    folder = lmf_home / "data" / "dialogsum-synthetic"
    folder.mkdir(parents=True)
    (folder / "test.jsonl").write_text(json.dumps({"id": 1, "dialogue": "a", "summary": "b"}) + "\n")
    assert load_task("dialogsum-synthetic").examples[0].id == "1"


def test_prompt_keeps_braces_in_inputs(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"input": "What is {x} in f'{x}'?", "reference": "a variable"}) + "\n")
    task = load_task(f"jsonl:{path}")
    assert task.prompt(task.examples[0]) == "What is {x} in f'{x}'?"
    assert task.examples[0].id == "line-1"
    assert set(task.metrics) == {"exact_match", "token_f1", "rouge"}


def test_closed_book_qa_builtin() -> None:
    task = load_task("closed-book-qa")
    assert len(task.examples) >= 30
    assert len({e.id for e in task.examples}) == len(task.examples)
    assert all(e.input.endswith("?") and e.reference for e in task.examples)
    assert "Question: What is the capital of France?" in task.prompt(task.examples[0])
    assert task.metrics == ("exact_match", "token_f1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"input": "a", "reference": "b"}\nnot json\n', "invalid JSON"),
        ('{"input": "a"}\n', "'reference'"),
        ('["a", "b"]\n', "expected a JSON object"),
        (
            '{"id": 1, "input": "a", "reference": "b"}\n{"id": 1, "input": "c", "reference": "d"}\n',
            "duplicate",
        ),
        ("\n\n", "no examples"),
    ],
)
def test_bad_jsonl_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(LmfError, match=message):
        load_task(f"jsonl:{path}")


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(LmfError) as info:
        load_task("squad")
    for name in ("dialogsum-synthetic", "closed-book-qa", "jsonl"):
        assert name in str(info.value)
    with pytest.raises(LmfError, match="not found"):
        load_task("jsonl:/nonexistent/file.jsonl")
