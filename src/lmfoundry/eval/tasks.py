"""Evaluation tasks: examples + prompt template + generation settings + metric names.

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
from lmfoundry.finetune.data.templates import render_prompt
from lmfoundry.fsutil import read_jsonl
from lmfoundry.paths import lmf_home
from lmfoundry.types import Example, SamplingParams

INPUT_SLOT = "{input}"


@dataclass(frozen=True)
class Task:
    """What to ask, how to generate, and how to score it."""

    name: str
    examples: tuple[Example, ...]
    template: str
    """Prompt text; `{input}` is replaced by the example's input (no other braces are special)."""
    params: SamplingParams
    metrics: tuple[str, ...]

    def prompt(self, example: Example) -> str:
        return self.template.replace(INPUT_SLOT, example.input)

    @staticmethod
    def references(example: Example) -> list[str]:
        """The reference plus any other accepted answers in `metadata["answers"]`."""
        return [example.reference, *example.metadata.get("answers", ())]


def dialogsum_prompt(dialogue: str) -> str:
    """The fine-tuning `summarize` template's prompt, so evaluation asks exactly what training taught."""

    return render_prompt("summarize", {"id": "eval", "dialogue": dialogue, "summary": "-", "topic": ""})


def default_dialogsum_dir() -> Path:
    return lmf_home() / "data" / "dialogsum-synthetic"


def dialogsum_task(data_dir: str | Path | None = None) -> Task:
    """`test.jsonl` records `{id, dialogue, summary, topic}` from `data_dir` (default under $LMF_HOME)."""
    path = Path(data_dir or default_dialogsum_dir()) / "test.jsonl"
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
    return Task(
        name="dialogsum-synthetic",
        examples=_unique(examples, path),
        template=dialogsum_prompt(INPUT_SLOT),
        params=SamplingParams(temperature=0.0, max_new_tokens=96, stop=("###",)),
        metrics=("rouge",),
    )


def closed_book_qa_task() -> Task:
    examples = tuple(
        Example(id=qid, input=question, reference=answer, metadata={"answers": list(aliases)})
        for qid, question, answer, aliases in QUESTIONS
    )
    return Task(
        name="closed-book-qa",
        examples=examples,
        template="Answer the question with a few words.\n\nQuestion: {input}\nAnswer:",
        params=SamplingParams(temperature=0.0, max_new_tokens=16, stop=("\n",)),
        metrics=("exact_match", "token_f1"),
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
    return Task(
        name=f"jsonl:{path}",
        examples=_unique(examples, path),
        template=INPUT_SLOT,
        params=SamplingParams(temperature=0.0, max_new_tokens=128),
        metrics=metrics,
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
