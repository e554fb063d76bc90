"""The bundled tool-use task: questions a model answers reliably only by calling its tools.

Three kinds, all deterministic for a seed: arithmetic for the calculator, questions about the
bundled shop database for `sql` (answers computed here in Python from the same rows), and
questions about Python's language reference for `rag_search` (optional: they need a store built
from `builtin:python-reference`). Each item carries its expected answer and how it is checked.
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from lmfoundry.agents.task_db import PRODUCTS, make_orders

AnswerKind = Literal["number", "text"]
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


@dataclass(frozen=True)
class ToolTask:
    id: str
    question: str
    expected: str
    kind: AnswerKind
    """`number`: some number in the answer equals `expected` (relative 1e-4, absolute 0.01);
    `text`: the normalized answer contains the normalized `expected`."""
    tool: str
    """The tool the question is written for."""
    reference: str = ""
    """What a correct call passes: the calculator expression or the SQL query (training data)."""


def calculator_tasks(seed: int = 0, n: int = 6) -> list[ToolTask]:
    """Arithmetic a small model gets wrong in its head: products, quotients, powers, percentages."""
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        a, b, c = rng.randint(120, 9999), rng.randint(13, 999), rng.randint(100, 99999)
        question, value, expression = [
            (f"What is {a} * {b} + {c}?", a * b + c, f"{a} * {b} + {c}"),
            (f"What is {c} divided by {b}? Give the result rounded to 2 decimal places.", round(c / b, 2),
             f"round({c} / {b}, 2)"),
            (f"What is {b} to the power of 3, minus {a}?", b**3 - a, f"{b} ** 3 - {a}"),
            (f"What is {b % 97 + 3}% of {c}?", round((b % 97 + 3) / 100 * c, 2), f"round({b % 97 + 3} / 100 * {c}, 2)"),
        ][i % 4]  # fmt: skip
        tasks.append(
            ToolTask(f"calc-{seed}-{i}", question, _number_text(value), "number", "calculator", expression)
        )
    return tasks


def sql_tasks(seed: int = 0) -> list[ToolTask]:
    """Questions over the shop database of the same seed, answered here from its rows."""
    rng = random.Random(seed + 1)
    orders = make_orders(seed)
    price = dict(PRODUCTS)
    customer, product = rng.choice(sorted({o.customer for o in orders})), rng.choice(sorted(price))
    spent = sum(o.quantity * price[o.product] for o in orders if o.customer == customer)
    revenue: dict[str, float] = defaultdict(float)
    for o in orders:
        revenue[o.product] += o.quantity * price[o.product]
    top = max(sorted(revenue), key=revenue.__getitem__)
    day = rng.randint(10, 20)
    items = [
        (f"How many orders did the customer {customer} place?", str(sum(o.customer == customer for o in orders)), "number"),
        (f"What total quantity of the product '{product}' was ordered across all orders?",
         str(sum(o.quantity for o in orders if o.product == product)), "number"),
        (f"How much did {customer} spend in total (quantity times price, summed over their orders)?",
         _number_text(round(spent, 2)), "number"),
        ("Which product brought in the most revenue (quantity times price)? Answer with its name.", top, "text"),
        (f"How many orders were placed on or after March {day}, 2024?", str(sum(o.day >= day for o in orders)), "number"),
    ]  # fmt: skip
    queries = _sql_references(customer, product, day)
    return [
        ToolTask(f"sql-{seed}-{i}", q, e, k, "sql", queries[i])  # type: ignore[arg-type]
        for i, (q, e, k) in enumerate(items)
    ]


_ORDERS = "orders JOIN customers ON customers.id = orders.customer_id JOIN products ON products.id = orders.product_id"


def _sql_references(customer: str, product: str, day: int) -> list[str]:
    """The query answering each `sql_tasks` question, in its order."""
    return [
        f"SELECT COUNT(*) FROM {_ORDERS} WHERE customers.name = '{customer}'",
        f"SELECT SUM(orders.quantity) FROM {_ORDERS} WHERE products.name = '{product}'",
        f"SELECT ROUND(SUM(orders.quantity * products.price), 2) FROM {_ORDERS} WHERE customers.name = '{customer}'",
        f"SELECT products.name, SUM(orders.quantity * products.price) AS revenue FROM {_ORDERS} "
        "GROUP BY products.name ORDER BY revenue DESC LIMIT 1",
        f"SELECT COUNT(*) FROM orders WHERE order_date >= '2024-03-{day:02d}'",
    ]


RAG_QUESTIONS = [
    ("According to the Python language reference, which statement terminates the nearest enclosing loop?", "break"),
    ("Which Python statement continues with the next cycle of the nearest enclosing loop?", "continue"),
    ("Which Python statement declares that the listed identifiers are to be interpreted as globals?", "global"),
    ("Which keyword, used in a function body, makes that function a generator?", "yield"),
    ("Which Python statement is a convenient way to insert debugging assertions into a program?", "assert"),
]  # fmt: skip


def rag_tasks() -> list[ToolTask]:
    """Questions answered from a store indexed from `builtin:python-reference`."""
    return [ToolTask(f"rag-{i}", q, e, "text", "rag_search") for i, (q, e) in enumerate(RAG_QUESTIONS)]


def tool_use_tasks(seed: int = 0, *, include_rag: bool = False, n_calculator: int = 6) -> list[ToolTask]:
    """The whole task: calculator and SQL items (and RAG items when a store is available)."""
    return calculator_tasks(seed, n_calculator) + sql_tasks(seed) + (rag_tasks() if include_rag else [])


def check(task: ToolTask, answer: str | None) -> bool:
    """Whether `answer` gives the expected answer (see `ToolTask.kind`)."""
    if not answer:
        return False
    if task.kind == "text":
        return _normalize(task.expected) in _normalize(answer)
    expected = float(task.expected)
    return any(math.isclose(value, expected, rel_tol=1e-4, abs_tol=0.01) for value in numbers_in(answer))


def numbers_in(text: str) -> list[float]:
    """Every number written in `text` (thousands separators allowed)."""
    values = []
    for match in _NUMBER.findall(text):
        try:
            values.append(float(match.replace(",", "")))
        except ValueError:
            continue
    return values


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"
