"""Evaluation tasks: examples + the prompt a model used as it comes gets + generation settings +
metric names.

Built-in: `dialogsum-synthetic` (dialogue summarization, ROUGE), `closed-book-qa` (30 short
factual questions, exact match + token F1) and `jsonl:PATH` (your own `input`/`reference` records).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry import plugins
from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.eval.closed_book_qa import QUESTIONS
from lmfoundry.eval.metrics import check_metric_names
from lmfoundry.fsutil import read_jsonl
from lmfoundry.paths import lmf_home
from lmfoundry.types import Example, SamplingParams


@dataclass(frozen=True)
class Task:
    """What to ask, how to generate, and how to score it.

    How each example is put to a model is not the task's business alone: a model used as it comes
    gets the task's prompt (`prompt`, a built-in or registered template) through its chat
    template, a fine-tuned run gets the template it was trained with (`training_record` gives the
    example in training-record form). `data_dir`'s train split is the pool of demonstrations for
    few-shot prompts and its validation split is where prompts are compared (never the test split).
    """

    name: str
    examples: tuple[Example, ...]
    params: SamplingParams
    metrics: tuple[str, ...]
    prompt: str = "instruct"
    """The prompt template a model used as it comes gets (`lmfoundry.prompts`)."""
    data_dir: Path | None = None
    """Folder with train/validation/test splits (dialogsum-synthetic), else None."""
    record_format: str = "instruction"
    """How an example becomes a training record: `summarization` or `instruction`."""
    primary_metric: str = "token_f1"
    """The aggregate that ranks prompts when the strongest baseline is searched for."""

    @staticmethod
    def references(example: Example) -> list[str]:
        """The reference plus any other accepted answers in `metadata["answers"]`."""
        return [example.reference, *example.metadata.get("answers", ())]

    def training_record(self, example: Example) -> dict[str, Any]:
        """The example as a fine-tuning record without its answer (for the run's training template)."""
        if self.record_format == "summarization":
            return {"id": example.id, "dialogue": example.input, "summary": "", "topic": ""}
        return {"instruction": example.input, "input": "", "output": ""}

    def split(self, name: str) -> tuple[Example, ...]:
        """The examples of another split of the task's data (`train`, `validation`); () if none."""
        if self.data_dir is None or not (Path(self.data_dir) / f"{name}.jsonl").is_file():
            return ()
        return _dialogsum_examples(Path(self.data_dir) / f"{name}.jsonl")


def default_dialogsum_dir() -> Path:
    return lmf_home() / "data" / "dialogsum-synthetic"


def dialogsum_task(data_dir: str | Path | None = None) -> Task:
    """`test.jsonl` records `{id, dialogue, summary, topic}` from `data_dir` (default under $LMF_HOME)."""
    folder = Path(data_dir or default_dialogsum_dir())
    if data_dir is None and not (folder / "test.jsonl").is_file():
        raise LmfError(f"no data at {folder}: run `lmf data make dialogsum-synthetic`, or pass --data-dir")
    return Task(
        name="dialogsum-synthetic",
        examples=_dialogsum_examples(folder / "test.jsonl"),
        params=SamplingParams(temperature=0.0, max_new_tokens=96),
        metrics=("rouge",),
        prompt="dialogsum-summary",
        data_dir=folder,
        record_format="summarization",
        primary_metric="rougeL",
    )


def _dialogsum_examples(path: Path) -> tuple[Example, ...]:
    examples = []
    for line_no, record in _read_jsonl(path):
        fields = _require_fields(record, ("id", "dialogue", "summary"), path, line_no)
        examples.append(
            Example(
                id=str(fields["id"]),
                input=fields["dialogue"],
                reference=fields["summary"],
                metadata={"topic": record.get("topic", "")},
            )
        )
    return _unique(examples, path)


def closed_book_qa_task() -> Task:
    examples = tuple(
        Example(id=qid, input=question, reference=answer, metadata={"answers": list(aliases)})
        for qid, question, answer, aliases in QUESTIONS
    )
    return Task(
        name="closed-book-qa",
        examples=examples,
        params=SamplingParams(temperature=0.0, max_new_tokens=16),
        metrics=("exact_match", "token_f1"),
        prompt="closed-book-qa",
    )


def jsonl_task(path: str | Path, metrics: tuple[str, ...] = ("exact_match", "token_f1", "rouge")) -> Task:
    """Records `{"input": ..., "reference": ...}` (optional `id`; other keys become metadata)."""
    path = Path(path)
    check_metric_names(metrics)
    examples = []
    for line_no, record in _read_jsonl(path):
        fields = _require_fields(record, ("input", "reference"), path, line_no)
        metadata = {k: v for k, v in record.items() if k not in ("id", "input", "reference")}
        example_id = str(record.get("id", f"line-{line_no}"))
        examples.append(Example(example_id, fields["input"], fields["reference"], metadata))
    primary = "rougeL" if "rouge" in metrics else metrics[0] if metrics else "token_f1"
    return Task(
        name=f"jsonl:{path}",
        examples=_unique(examples, path),
        params=SamplingParams(temperature=0.0, max_new_tokens=128),
        metrics=metrics,
        primary_metric=primary,
    )


def load_task(spec: str, data_dir: str | Path | None = None) -> Task:
    """The task a spec names: a built-in (`dialogsum-synthetic`, `closed-book-qa`, `jsonl:PATH`) or
    a registered `task` plugin's `NAME[:ARG]`; `data_dir` only applies to `dialogsum-synthetic`."""
    name, arg = plugins.parse_spec(spec)
    factory = plugins.get("task", name)  # an unknown name is an error naming the known ones
    task: Task = factory(arg, data_dir)
    return task


def task_names() -> list[str]:
    """Every task name (`jsonl` is `jsonl:PATH`), for help texts and errors."""
    return [f"{n}:PATH" if n == "jsonl" else n for n in plugins.names("task")]


def dialogsum_factory(arg: str, data_dir: str | Path | None) -> Task:
    """The `dialogsum-synthetic` task plugin."""
    if arg:
        raise InvalidInputError("dialogsum-synthetic takes no argument (its folder is --data-dir)")
    return dialogsum_task(data_dir)


def closed_book_qa_factory(arg: str, data_dir: str | Path | None) -> Task:
    """The `closed-book-qa` task plugin."""
    return closed_book_qa_task()


def jsonl_factory(arg: str, data_dir: str | Path | None) -> Task:
    """The `jsonl:PATH` task plugin."""
    if not arg:
        raise InvalidInputError("name the file: jsonl:PATH")
    return jsonl_task(arg)


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    records = list(read_jsonl(path, f"task data not found: {path}"))
    if not records:
        raise LmfError(f"{path}: no examples")
    return records


def _require_fields(record: dict, names: tuple[str, ...], path: Path, line_no: int) -> dict:
    for name in names:
        value = record.get(name)
        if value is None or (name != "id" and not isinstance(value, str)):
            raise LmfError(f"{path}:{line_no}: missing or non-string field {name!r}")
    return record


def _unique(examples: list[Example], path: Path) -> tuple[Example, ...]:
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise LmfError(f"{path}: duplicate example id {example.id!r}")
        seen.add(example.id)
    return tuple(examples)
