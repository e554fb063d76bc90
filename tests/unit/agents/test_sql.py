from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from lmfoundry.agents.tools.base import ToolError
from lmfoundry.agents.tools.sql import sql_tool
from lmfoundry.errors import InvalidInputError


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    conn.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, f"item{i}", i * 1.5) for i in range(1, 81)])
    conn.commit()
    conn.close()
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_select_and_schema_in_description(db: Path) -> None:
    tool = sql_tool(db)
    assert "items(id INTEGER, name TEXT, price REAL)" in tool.description
    out = tool.invoke({"query": "SELECT name, price FROM items WHERE id <= 2 ORDER BY id"})
    assert out.splitlines() == ["name | price", "item1 | 1.5", "item2 | 3.0"]
    assert tool.invoke({"query": "SELECT COUNT(*) AS n FROM items"}) == "n\n80"
    tool.close()  # type: ignore[misc]


def test_rows_are_capped(db: Path) -> None:
    out = sql_tool(db, max_rows=50).invoke({"query": "SELECT id FROM items"})
    lines = out.splitlines()
    assert len(lines) == 52 and lines[-1].startswith("... (more than 50 rows")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("INSERT INTO items VALUES (100, 'x', 1)", "INSERT"),
        ("UPDATE items SET price = 0", "UPDATE"),
        ("DELETE FROM items", "DELETE"),
        ("DROP TABLE items", "DROP"),
        ("CREATE TABLE evil (a)", "CREATE"),
        ("ATTACH DATABASE 'other.db' AS other", "ATTACH"),
        ("PRAGMA user_version = 7", "PRAGMA"),
    ],
)
def test_writes_are_refused_and_the_file_is_unchanged(db: Path, query: str, named: str) -> None:
    before = _digest(db)
    tool = sql_tool(db)
    with pytest.raises(ToolError, match=f"read-only database: {named} is refused"):
        tool.invoke({"query": query})
    tool.close()  # type: ignore[misc]
    assert _digest(db) == before
    assert not (db.parent / "other.db").exists()


def test_sql_errors_and_runaway_queries(db: Path) -> None:
    tool = sql_tool(db)
    with pytest.raises(ToolError, match="no such table: nope"):
        tool.invoke({"query": "SELECT * FROM nope"})
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
    with pytest.raises(ToolError, match="stopped"):
        tool.invoke({"query": forever}, timeout_s=0.2)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        sql_tool(tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()
