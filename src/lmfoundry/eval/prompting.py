"""How a task's examples are put to a model: the form the model was made for, or the prompt asked for.

- A model used as it comes (an instruct or base model) gets the task's prompt template, zero-shot
  unless `shots` says otherwise, through its chat template when it has one and as plain text when
  it has none.
- A fine-tuned run gets the template it was trained with (read from its `lmf_adapter.json`), so the
  evaluation asks exactly what training taught.
- `prompt` (a built-in or registered name, `NAME@VERSION`, or a YAML file) overrides both.

Every plan says what it used (`describe()`), and evaluation results record it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lmfoundry.eval.tasks import Task
from lmfoundry.finetune.data.templates import STOP_SEQUENCES, render_prompt, resolve_template
from lmfoundry.finetune.train.artifacts import find_artifact, read_info
from lmfoundry.prompts.registry import resolve_prompt
from lmfoundry.prompts.render import Prompt, PromptRenderer, Rendered
from lmfoundry.prompts.template import Demonstration
from lmfoundry.types import Example, Message

DEFAULT_SHOTS = 3
"""Demonstrations of the few-shot prompt the strongest-baseline search tries besides zero-shot."""


class AskPlan(Protocol):
    """Turns an example into the prompt one model gets, and says how."""

    def render(self, example: Example) -> Rendered: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class TrainingTemplatePlan:
    """A fine-tuned run asked through the template of its training data."""

    task: Task
    template: str
    tokenizer: Any
    source: str

    def render(self, example: Example) -> Rendered:
        record = self.task.training_record(example)
        text = render_prompt(self.template, record, self.tokenizer)
        name = resolve_template(self.template, record)
        return Rendered(text, 0, -1, tuple(STOP_SEQUENCES.get(name, [])))

    def describe(self) -> dict[str, Any]:
        return {"name": f"training-template:{self.template}", "version": "run", "source": self.source,
                "shots": 0, "selection": "fixed", "seed": 0, "form": "training"}  # fmt: skip


@dataclass
class TemplatePlan:
    """A prompt template rendered for one model (chat or text form, demonstrations, budget)."""

    renderer: PromptRenderer

    def render(self, example: Example) -> Rendered:
        return self.renderer.render(example.input, example.id)

    def describe(self) -> dict[str, Any]:
        return self.renderer.describe()


def training_template_of(run: str | Path) -> tuple[str, str]:
    """(template name, run folder) of a fine-tuning run or adapter folder."""
    folder = find_artifact(run)
    return read_info(folder).template, str(folder)


def plan_for(
    model: Any,
    task: Task,
    *,
    prompt: str | None = None,
    shots: int | None = None,
    selection: str | None = None,
    run: str | Path | None = None,
    max_new_tokens: int | None = None,
) -> AskPlan:
    """The plan for `model` on `task` (see the module docstring); `run` is the fine-tuning run or
    adapter folder the model carries, whose training template applies unless `prompt` is given."""
    if prompt is None and shots is None and run is not None:
        template, source = training_template_of(run)
        return TrainingTemplatePlan(task, template, getattr(model, "tokenizer", None), source)
    ref = resolve_prompt(prompt or task.prompt)
    ref = dataclasses.replace(ref, template=ref.template.with_shots(shots, selection))
    room = max_new_tokens if max_new_tokens is not None else task.params.max_new_tokens
    renderer = PromptRenderer(
        ref,
        chat=chat_capable(model),
        count_tokens=token_counter(model),
        budget=context_length(model) - room,
        pool=task_pool(task),
    )
    return TemplatePlan(renderer)


def plan_from_record(record: dict[str, Any], model: Any, task: Task) -> AskPlan:
    """The plan a result's `prompt` record describes, for another instance of the same model (a
    server, say), so it is asked exactly what the evaluation asked."""
    name, source = str(record.get("name", "")), str(record.get("source", ""))
    if name.startswith("training-template:"):
        return TrainingTemplatePlan(task, name.split(":", 1)[1], getattr(model, "tokenizer", None), source)
    spec = f"{name}@{record['version']}" if source == "mlflow" else name if source == "builtin" else source
    return plan_for(
        model, task, prompt=spec or None, shots=record.get("shots"), selection=record.get("selection")
    )


def task_pool(task: Task) -> list[Demonstration]:
    """The task's train split as demonstrations (empty when the task has none)."""
    return [Demonstration(e.input, e.reference) for e in task.split("train")]


def chat_capable(model: Any) -> bool:
    """Whether `model` renders messages with a chat template (remote endpoints are assumed to)."""
    check = getattr(model, "has_chat_template", None)
    return bool(check()) if callable(check) else False


def context_length(model: Any) -> int:
    return int(getattr(model, "context_length", 2048))


def token_counter(model: Any) -> Any:
    """Prompt tokens as the model will see them (chat template included) when it can say."""
    count = getattr(model, "count_prompt_tokens", None)
    if callable(count):
        return count
    return lambda prompt: _rough_tokens(prompt)


def _rough_tokens(prompt: Prompt) -> int:
    """A generous estimate for models that cannot count: never overfills the context."""
    text = prompt if isinstance(prompt, str) else " ".join(m.content for m in prompt)
    return len(text) // 2 + (0 if isinstance(prompt, str) else 8 * len(prompt))


def prompt_label(prompt: dict[str, Any]) -> str:
    """A short name for a prompt record: `zero-shot`, `3-shot similar`, or `training template`."""
    if prompt.get("form") == "training":
        return "training template"
    shots = int(prompt.get("shots") or 0)
    return "zero-shot" if shots == 0 else f"{shots}-shot {prompt.get('selection')}"


def as_text(prompt: str | list[Message]) -> str:
    """A prompt as one string (for outputs files and reports)."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"[{m.role}] {m.content}" for m in prompt)
