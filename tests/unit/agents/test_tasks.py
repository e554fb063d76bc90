from __future__ import annotations

import sqlite3
from pathlib import Path

from agent_script import ScriptedModel, answer, call, calls
from lmfoundry.agents.evaluate import evaluate_agent, score, task_tools
from lmfoundry.agents.task_db import shop_database
from lmfoundry.agents.tasks import ToolTask, check, sql_tasks, tool_use_tasks


def test_the_task_set_is_deterministic_per_seed() -> None:
    assert tool_use_tasks(0) == tool_use_tasks(0)
    assert tool_use_tasks(0) != tool_use_tasks(1)
    assert {t.tool for t in tool_use_tasks(0)} == {"calculator", "sql"}
    assert {t.tool for t in tool_use_tasks(0, include_rag=True)} == {"calculator", "sql", "rag_search"}
    assert len({t.id for t in tool_use_tasks(0, include_rag=True)}) == len(
        tool_use_tasks(0, include_rag=True)
    )


def test_expected_sql_answers_match_the_database(tmp_path: Path) -> None:
    """The answers computed in Python agree with SQL over the built file (two ways, one truth)."""
    path = shop_database(3, tmp_path)
    assert path.read_bytes() == shop_database(3, tmp_path / "again").read_bytes()
    conn = sqlite3.connect(path)
    count_task = sql_tasks(3)[0]
    customer = count_task.question.split("customer ")[1].removesuffix(" place?")
    query = "SELECT COUNT(*) FROM orders JOIN customers c ON c.id = customer_id WHERE c.name = ?"
    assert str(conn.execute(query, (customer,)).fetchone()[0]) == count_task.expected
    top = conn.execute(
        "SELECT p.name FROM orders o JOIN products p ON p.id = o.product_id "
        "GROUP BY p.name ORDER BY SUM(o.quantity * p.price) DESC LIMIT 1"
    ).fetchone()[0]
    assert sql_tasks(3)[3].expected == top


def test_checker() -> None:
    number = ToolTask("n", "q", "5129284", "number", "calculator")
    assert check(number, "6431 * 789 + 55225 = 5,129,284.")
    assert check(number, "The answer is 5129284.0")
    assert not check(number, "about 5.1 million") and not check(number, None)
    money = ToolTask("m", "q", "192.99", "number", "sql")
    assert check(money, "$192.99") and not check(money, "193.5")
    text = ToolTask("t", "q", "lamp", "text", "sql")
    assert check(text, "The LAMP brought in the most.") and not check(text, "the mug")


def test_evaluate_and_score(tmp_path: Path) -> None:
    tasks = tool_use_tasks(0)[:2]
    first = tasks[0].question.removeprefix("What is ").removesuffix("?")
    model = ScriptedModel(
        calls(call("calculator", {"expression": first})),
        answer(f"It is {tasks[0].expected}."),
        calls(call("nope", {})),
        answer("no idea"),
    )
    result = evaluate_agent(model, limit=2, db_dir=tmp_path)
    assert (result.n, result.successes, result.success_rate) == (2, 1, 0.5)
    assert (result.valid_calls, result.invalid_calls, result.valid_call_rate) == (1, 1, 0.5)
    assert result.mean_steps == 2.0
    assert result.to_dict()["outcomes"][0]["success"] is True
    assert score([]).valid_call_rate is None
    assert [t.name for t in task_tools(0, db_dir=tmp_path)] == ["calculator", "sql"]
