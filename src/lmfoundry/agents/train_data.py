"""Function-calling conversations for fine-tuning a model on the tool-use task.

Each task item's reference call (`ToolTask.reference`) is run through the real tool, so the
observations are what the agent would see; each conversation becomes two chat records, one whose
target is the call and one whose target is the final answer, because a chat record trains only
its last assistant turn. Seeds start at `FIRST_SEED`, so no training item is an item that
`lmf agent eval` scores (seeds 0..). The records carry `tools` and the agent's system prompt, and
fine-tuning renders them in the format inference prompts them in (generate/tools.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfoundry.agents.evaluate import task_tools
from lmfoundry.agents.loop import DEFAULT_SYSTEM
from lmfoundry.agents.tasks import ToolTask, calculator_tasks, check, sql_tasks
from lmfoundry.agents.tools import Tool, close_tools
from lmfoundry.errors import LmfError
from lmfoundry.finetune.data.synthetic_io import make_set

NAME = "tool-use-synthetic"
FIRST_SEED = 1000


def tool_use_records(n: int, seed: int = 0, db_dir: Path | None = None) -> list[dict[str, Any]]:
    """`n` chat records (two per conversation), from task seeds FIRST_SEED + seed * 10_000 on."""
    records: list[dict[str, Any]] = []
    task_seed = FIRST_SEED + seed * 10_000
    while len(records) < n:
        tools = task_tools(task_seed, db_dir=db_dir)
        try:
            for task in calculator_tasks(task_seed, 4) + sql_tasks(task_seed):
                records += conversation_records(task, {t.name: t for t in tools})
        finally:
            close_tools(tools)
        task_seed += 1
    return records[:n]


def conversation_records(task: ToolTask, tools: dict[str, Tool]) -> list[dict[str, Any]]:
    """The call record and the answer record of one task item."""
    argument = "expression" if task.tool == "calculator" else "query"
    observation = tools[task.tool].invoke({argument: task.reference})
    if not check(task, observation):
        raise LmfError(f"{task.id}: the reference call's result {observation!r} lacks {task.expected!r}")
    call = {
        "id": "call_0",
        "type": "function",
        "function": {"name": task.tool, "arguments": json.dumps({argument: task.reference})},
    }
    specs = [tool.spec() for tool in tools.values()]
    asking = [{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": task.question}]
    calling = [*asking, {"role": "assistant", "content": None, "tool_calls": [call]}]
    answering = [
        *calling,
        {"role": "tool", "tool_call_id": "call_0", "content": observation},
        {"role": "assistant", "content": f"The answer is {task.expected}."},
    ]
    return [{"tools": specs, "messages": calling}, {"tools": specs, "messages": answering}]


def make_tool_use_synthetic(
    n: int = 600, seed: int = 0, out_dir: Path | str | None = None
) -> dict[str, Path]:
    """Write the set (train/validation/test JSONL + README) into `out_dir` (default
    $LMF_HOME/data/tool-use-synthetic)."""
    return make_set(NAME, tool_use_records, _readme, n, seed, out_dir)


def _readme(n: int, seed: int, records: list[dict[str, Any]], listing: str) -> str:
    return (
        f"# {NAME}\n\nFunction-calling conversations on the lmfoundry tool-use task (calculator and "
        f"read-only SQL over the bundled shop database), {n} chat records from seed {seed}: each "
        "item once with the tool call as its target and once with the final answer. Made by "
        f"`lmf agent data --n {n} --seed {seed}`; task seeds from {FIRST_SEED} on, disjoint from "
        f"those `lmf agent eval` scores.\n\n{listing}"
    )
