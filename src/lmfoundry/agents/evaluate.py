"""Run the tool-use task and score it: task success rate, valid-call rate and mean steps.

Success says whether the agent got the right answer; the valid-call rate says whether it could
use the tools at all (a model that calls unknown tools or writes broken JSON fails for a
different reason than one that computes the wrong thing), and mean steps says how directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.agents.loop import AgentResult, run_agent
from lmfoundry.agents.model import ToolChatModel
from lmfoundry.agents.task_db import shop_database
from lmfoundry.agents.tasks import ToolTask, check, tool_use_tasks
from lmfoundry.agents.tools.base import Tool, close_tools
from lmfoundry.agents.tools.calculator import calculator
from lmfoundry.agents.tools.rag_search import rag_search
from lmfoundry.agents.tools.sql import sql_tool


@dataclass
class TaskOutcome:
    task_id: str
    success: bool
    answer: str | None
    expected: str
    stop_reason: str
    steps: int
    valid_calls: int
    invalid_calls: int


@dataclass
class AgentScore:
    n: int
    successes: int
    valid_calls: int
    invalid_calls: int
    total_steps: int
    outcomes: list[TaskOutcome] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.successes / self.n if self.n else 0.0

    @property
    def valid_call_rate(self) -> float | None:
        """Valid calls over all calls; None when the agent made no call at all."""
        calls = self.valid_calls + self.invalid_calls
        return self.valid_calls / calls if calls else None

    @property
    def mean_steps(self) -> float:
        return self.total_steps / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "success_rate": self.success_rate, "valid_call_rate": self.valid_call_rate,
                "mean_steps": self.mean_steps}  # fmt: skip


def outcome(task: ToolTask, result: AgentResult) -> TaskOutcome:
    """How one run of the agent on `task` went."""
    return TaskOutcome(
        task.id, check(task, result.answer), result.answer, task.expected, result.stop_reason,
        len(result.steps), result.valid_calls, result.invalid_calls,
    )  # fmt: skip


def score(outcomes: Sequence[TaskOutcome]) -> AgentScore:
    """Counts and rates over the outcomes."""
    return AgentScore(
        n=len(outcomes),
        successes=sum(o.success for o in outcomes),
        valid_calls=sum(o.valid_calls for o in outcomes),
        invalid_calls=sum(o.invalid_calls for o in outcomes),
        total_steps=sum(o.steps for o in outcomes),
        outcomes=list(outcomes),
    )


def task_tools(seed: int = 0, rag_store: str | None = None, db_dir: Path | None = None) -> list[Tool]:
    """The tools the task is written for: calculator, sql over the shop db, rag_search if a store."""
    tools = [calculator(), sql_tool(shop_database(seed, db_dir))]
    return tools + ([rag_search(rag_store)] if rag_store else [])


def evaluate_agent(
    model: ToolChatModel,
    *,
    seed: int = 0,
    limit: int | None = None,
    rag_store: str | None = None,
    max_steps: int = 6,
    time_limit_s: float = 120.0,
    on_task: Callable[[ToolTask, TaskOutcome], object] | None = None,
    db_dir: Path | None = None,
    first_tool_choice: str | None = "required",
) -> AgentScore:
    """Run the agent on the bundled tool-use task (RAG items only with `rag_store`) and score it.

    Every item needs a tool, so the first step requires a call by default (`first_tool_choice`):
    what is scored is then whether the calls are valid and the results are used, not whether a
    small model thinks of calling at all (`None` leaves that to the model)."""
    tasks = tool_use_tasks(seed, include_rag=rag_store is not None)[:limit]
    tools = task_tools(seed, rag_store, db_dir)
    outcomes = []
    try:
        for task in tasks:
            result = run_agent(
                model,
                task.question,
                tools,
                max_steps=max_steps,
                time_limit_s=time_limit_s,
                first_tool_choice=first_tool_choice,
            )
            outcomes.append(outcome(task, result))
            if on_task is not None:
                on_task(task, outcomes[-1])
    finally:
        close_tools(tools)
    return score(outcomes)
