"""Function-calling training data for the tool-use task: reference calls run through the real
tools, two records per item (call, answer), disjoint from the scored seeds, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfoundry.agents.evaluate import task_tools
from lmfoundry.agents.tasks import ToolTask, tool_use_tasks
from lmfoundry.agents.train_data import (
    FIRST_SEED,
    conversation_records,
    make_tool_use_synthetic,
    tool_use_records,
)
from lmfoundry.errors import LmfError
from lmfoundry.finetune.data.formats import validate_record


def test_records_pair_a_call_with_its_answer(tmp_path: Path) -> None:
    records = tool_use_records(40, seed=0, db_dir=tmp_path)
    assert len(records) == 40
    for calling, answering in zip(records[::2], records[1::2], strict=True):
        assert validate_record(calling) == validate_record(answering) == "chat"
        call = calling["messages"][-1]["tool_calls"][0]
        assert answering["messages"][2]["tool_calls"][0] == call
        assert answering["messages"][-1]["content"].startswith("The answer is ")
        assert {t["function"]["name"] for t in calling["tools"]} == {"calculator", "sql"}
    # arithmetic never repeats an item eval scores; SQL wording may, but over another seed's database
    questions = {r["messages"][1]["content"] for r in records}
    assert not questions & {t.question for t in tool_use_tasks(0) if t.tool == "calculator"}
    assert tool_use_records(40, seed=0, db_dir=tmp_path) == records


def test_a_wrong_reference_is_refused(tmp_path: Path) -> None:
    tools = {t.name: t for t in task_tools(FIRST_SEED, db_dir=tmp_path)}
    wrong = ToolTask("x", "What is 2 + 2?", "5", "number", "calculator", "2 + 2")
    with pytest.raises(LmfError, match="lacks '5'"):
        conversation_records(wrong, tools)


def test_the_set_is_written_with_splits(tmp_path: Path) -> None:
    paths = make_tool_use_synthetic(60, 0, tmp_path / "set")
    sizes = {split: len(path.read_text().splitlines()) for split, path in paths.items()}
    assert sum(sizes.values()) == 60 and sizes["train"] == 48
    first = json.loads(paths["train"].read_text().splitlines()[0])
    assert first["messages"][0]["role"] == "system" and "tools" in first
