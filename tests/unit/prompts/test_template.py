"""Prompt templates: parsing with clear errors, and the chat and text forms they render."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.prompts.template import Demonstration, PromptTemplate, load_prompt_file, parse_prompt
from lmfoundry.types import Message

DEMOS = [
    Demonstration("Tom: hi. Ann: hello.", "They greet."),
    Demonstration("Bo: rain? Cy: yes.", "It rains."),
]


def _template(**changes: object) -> PromptTemplate:
    data: dict[str, object] = {
        "name": "t",
        "instruction": "Summarize.",
        "system": "Be brief.",
        "input": "Chat:\n{input}",
    }
    data.update(changes)
    return parse_prompt(data)


def test_chat_form_puts_system_demonstrations_then_the_input() -> None:
    messages = _template().messages("X: ok.", DEMOS)
    assert messages == [
        Message("system", "Be brief."),
        Message("user", "Summarize.\n\nChat:\nTom: hi. Ann: hello."),
        Message("assistant", "They greet."),
        Message("user", "Summarize.\n\nChat:\nBo: rain? Cy: yes."),
        Message("assistant", "It rains."),
        Message("user", "Summarize.\n\nChat:\nX: ok."),
    ]
    assert _template(system=None, instruction="").messages("X", []) == [Message("user", "Chat:\nX")]


def test_text_form_labels_each_part_and_stops_at_the_next_input() -> None:
    template = _template(text_labels={"input": "Dialogue:", "output": "Summary:"}, stop=["###"])
    text = template.text("X: ok.", DEMOS[:1])
    assert text == (
        "Be brief.\n\nSummarize.\n\nDialogue:\nChat:\nTom: hi. Ann: hello.\nSummary: They greet."
        "\n\nDialogue:\nChat:\nX: ok.\nSummary:"
    )
    assert template.text_stop() == ("\nDialogue:", "###")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input": "no slot"}, "must contain {input}"),
        ({"shots": -1}, "shots must be >= 0"),
        ({"selection": "best"}, "selection must be one of fixed, random, similar"),
        ({"demonstrations": [{"input": "a"}]}, "exactly 'input' and 'output'"),
        ({"text_labels": {"input": "Q:"}}, "text_labels"),
        ({"colour": "red"}, "unknown config key"),
    ],
)
def test_bad_templates_are_errors_naming_the_problem(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        _template(**changes)


def test_files_round_trip_and_shots_can_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(_template(demonstrations=[{"input": "a", "output": "b"}]).to_yaml())
    loaded = load_prompt_file(path)
    assert loaded.fixed_demonstrations() == [Demonstration("a", "b")]
    assert (
        loaded.with_shots(3, "similar").shots == 3 and loaded.with_shots(3, "similar").selection == "similar"
    )
    assert loaded.with_shots(None).shots == 0
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(InvalidInputError, match="bad.yaml"):
        load_prompt_file(tmp_path / "bad.yaml")
