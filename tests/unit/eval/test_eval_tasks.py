"""Task loading: built-in tasks, prompt layout, and clear errors for bad data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.eval.prompting import plan_for
from lmfoundry.eval.tasks import Task, load_task


def _asked(task: Task, index: int = 0) -> str:
    """What a model without a chat template is asked for one example (the task's default prompt)."""
    prompt = plan_for(object(), task).render(task.examples[index]).prompt
    assert isinstance(prompt, str)
    return prompt


def test_dialogsum_reads_records_and_asks_with_its_prompt(dialogsum_dir: Path) -> None:
    task = load_task("dialogsum-synthetic", data_dir=dialogsum_dir)
    assert [e.id for e in task.examples] == ["d1", "d2", "d3"]
    first = task.examples[0]
    assert first.reference == "#Person2# will come to the party and bring cake."
    assert first.metadata["topic"] == "party"
    assert task.prompt == "dialogsum-summary" and task.primary_metric == "rougeL"
    assert _asked(task).startswith("Summarize the dialogue below")
    assert _asked(task).endswith(f"Dialogue:\n{first.input}\nSummary:")
    # a fine-tuned run is asked with its training template instead: the record it was trained on
    assert task.training_record(first) == {"id": "d1", "dialogue": first.input, "summary": "", "topic": ""}
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
    assert _asked(task) == "Input:\nWhat is {x} in f'{x}'?\nOutput:"
    assert task.examples[0].id == "line-1"
    assert set(task.metrics) == {"exact_match", "token_f1", "rouge"}


def test_closed_book_qa_builtin() -> None:
    task = load_task("closed-book-qa")
    assert len(task.examples) >= 30
    assert len({e.id for e in task.examples}) == len(task.examples)
    assert all(e.input.endswith("?") and e.reference for e in task.examples)
    assert "Question:\nWhat is the capital of France?\nAnswer:" in _asked(task)
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
