"""A prompt template: system text, an instruction, k demonstrations and the input, as one artifact.

```yaml
name: dialogsum-summary
description: Summarize a two-person dialogue.
system: null                      # optional system message
instruction: Summarize the dialogue below in one or two sentences.
input: "{input}"                  # where the example's input goes
shots: 3                          # demonstrations per prompt (0 = zero-shot)
selection: similar                # fixed | random | similar (see select.py)
seed: 0
demonstrations: []                # fixed {input, output} pairs; else the task's train split
text_labels: {input: "Dialogue:", output: "Summary:"}
stop: []                          # extra stop strings
```

A model with a chat template gets messages: the system message, then each demonstration as a
user turn (instruction + input) and an assistant turn (its output), then the user turn of the
example. A model without one (a base model) gets the same content as plain text, each part under
its label, ending with the output label; the text form stops at the next input label, so a base
model that goes on to invent another example is cut there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lmfoundry.config import build, load_yaml
from lmfoundry.errors import InvalidInputError
from lmfoundry.types import Message

SELECTIONS = ("fixed", "random", "similar")
INPUT_SLOT = "{input}"


@dataclass(frozen=True)
class Demonstration:
    """One worked example shown to the model: an input and the output it should give."""

    input: str
    output: str


@dataclass
class PromptTemplate:
    name: str
    instruction: str = ""
    """What the model is asked to do (before the input, in the same user turn)."""
    system: str | None = None
    input: str = INPUT_SLOT
    """The user input's layout; `{input}` is replaced by the example's input."""
    shots: int = 0
    selection: str = "fixed"
    seed: int = 0
    demonstrations: list[dict[str, str]] = field(default_factory=list)
    """Fixed demonstrations ({input, output}); when empty, the task's train split is the pool."""
    text_labels: dict[str, str] = field(default_factory=lambda: {"input": "Input:", "output": "Output:"})
    stop: list[str] = field(default_factory=list)
    description: str = ""

    def __post_init__(self) -> None:
        where = f"prompt {self.name!r}"
        if not self.name:
            raise InvalidInputError("a prompt template needs a name")
        if INPUT_SLOT not in self.input:
            raise InvalidInputError(f"{where}: 'input' must contain {INPUT_SLOT}")
        if self.shots < 0:
            raise InvalidInputError(f"{where}: shots must be >= 0, got {self.shots}")
        if self.selection not in SELECTIONS:
            raise InvalidInputError(f"{where}: selection must be one of {', '.join(SELECTIONS)}")
        labels = self.text_labels
        if set(labels) != {"input", "output"} or not all(labels.values()):
            raise InvalidInputError(f"{where}: text_labels needs non-empty 'input' and 'output'")
        for demo in self.demonstrations:
            if set(demo) != {"input", "output"}:
                raise InvalidInputError(f"{where}: each demonstration needs exactly 'input' and 'output'")

    def fixed_demonstrations(self) -> list[Demonstration]:
        return [Demonstration(d["input"], d["output"]) for d in self.demonstrations]

    def with_shots(self, shots: int | None, selection: str | None = None) -> PromptTemplate:
        """A copy with another number of demonstrations (and selection), for `--shots K`."""
        data = asdict(self)
        data["shots"] = self.shots if shots is None else shots
        data["selection"] = selection or self.selection
        return PromptTemplate(**data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False, allow_unicode=True)

    # ---- rendering ----

    def user_text(self, text: str) -> str:
        body = self.input.replace(INPUT_SLOT, text)
        return f"{self.instruction}\n\n{body}" if self.instruction else body

    def messages(self, text: str, demos: list[Demonstration]) -> list[Message]:
        """The chat form: system, (user, assistant) per demonstration, then the user turn."""
        turns = [Message("system", self.system)] if self.system else []
        for demo in demos:
            turns += [Message("user", self.user_text(demo.input)), Message("assistant", demo.output)]
        return [*turns, Message("user", self.user_text(text))]

    def text(self, text: str, demos: list[Demonstration]) -> str:
        """The plain-text form for models without a chat template, ending with the output label."""
        inp, out = self.text_labels["input"], self.text_labels["output"]
        body = lambda value: self.input.replace(INPUT_SLOT, value)  # noqa: E731
        parts = [self.system] if self.system else []
        parts += [self.instruction] if self.instruction else []
        parts += [f"{inp}\n{body(d.input)}\n{out} {d.output}" for d in demos]
        parts.append(f"{inp}\n{body(text)}\n{out}")
        return "\n\n".join(parts)

    def text_stop(self) -> tuple[str, ...]:
        """Stop strings of the text form: the next input label, plus the template's own."""
        return (f"\n{self.text_labels['input']}", *self.stop)


def parse_prompt(data: dict[str, Any], where: str = "prompt") -> PromptTemplate:
    """A template from its YAML mapping (unknown keys are errors, naming `where`)."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where}: a prompt template is a mapping")
    try:
        return build(PromptTemplate, data)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from exc


def load_prompt_file(path: str | Path) -> PromptTemplate:
    return parse_prompt(load_yaml(path), where=str(path))
