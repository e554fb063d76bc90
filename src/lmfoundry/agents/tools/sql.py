"""`sql`: read-only SQL over one SQLite file.

Two independent locks keep it read-only: the file is opened with `mode=ro` (SQLite refuses every
write), and an authorizer allows only the actions a SELECT needs, so INSERT, UPDATE, DELETE,
CREATE, DROP, ATTACH and PRAGMA are refused while the statement is being prepared, with an error
that names the action. The schema goes into the tool description, so the model knows the tables.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.agents.tools.base import Tool, ToolError, object_schema, require_str
from lmfoundry.errors import InvalidInputError

MAX_ROWS = 50
QUERY_TIMEOUT_S = 10.0
MAX_CELL_CHARS = 200
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_ACTIONS = (
    "INSERT UPDATE DELETE CREATE_TABLE CREATE_INDEX CREATE_VIEW CREATE_TRIGGER CREATE_TEMP_TABLE "
    "CREATE_TEMP_INDEX CREATE_TEMP_VIEW CREATE_TEMP_TRIGGER CREATE_VTABLE DROP_TABLE DROP_INDEX DROP_VIEW "
    "DROP_TRIGGER DROP_TEMP_TABLE DROP_TEMP_INDEX DROP_TEMP_VIEW DROP_TEMP_TRIGGER DROP_VTABLE ALTER_TABLE "
    "ATTACH DETACH PRAGMA TRANSACTION SAVEPOINT REINDEX ANALYZE"
)
_ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name.lower().replace("_", " ")
    for name in _ACTIONS.split()
    if hasattr(sqlite3, f"SQLITE_{name}")
}


@dataclass
class ReadOnlyDatabase:
    """A read-only connection and the actions its authorizer refused in the current statement."""

    conn: sqlite3.Connection
    refused: list[str] = field(default_factory=list)


def connect_read_only(path: str | Path) -> ReadOnlyDatabase:
    """A connection that cannot change the file: `mode=ro` plus an authorizer for reads only."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"SQLite database not found: {path}")
    conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, check_same_thread=False)
    db = ReadOnlyDatabase(conn)

    def authorize(
        action: int, arg1: str | None, arg2: str | None, schema: str | None, source: str | None
    ) -> int:
        if action in _ALLOWED:
            return sqlite3.SQLITE_OK
        db.refused.append(_ACTION_NAMES.get(action, f"action {action}") + (f" {arg1}" if arg1 else ""))
        return sqlite3.SQLITE_DENY

    conn.set_authorizer(authorize)
    return db


def schema_text(path: str | Path) -> str:
    """`table(column TYPE, ...)` per table, read once when the tool is made."""
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        tables = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        ]
        lines = []
        for table in tables:
            columns = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            lines.append(f"{table}(" + ", ".join(f"{c[1]} {c[2]}".strip() for c in columns) + ")")
        return "\n".join(lines)
    finally:
        conn.close()


def run_query(
    db: ReadOnlyDatabase, query: str, max_rows: int = MAX_ROWS, timeout_s: float = QUERY_TIMEOUT_S
) -> str:
    """Rows as `col | col` lines under a header, at most `max_rows`, with a note when cut. A query
    running past `timeout_s` is interrupted (a recursive CTE can run forever)."""
    db.refused.clear()
    deadline = time.monotonic() + timeout_s
    db.conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        cursor = db.conn.execute(query)
        rows = cursor.fetchmany(max_rows + 1)
    except sqlite3.Warning as err:  # e.g. two statements in one string
        raise ToolError(f"SQL error: {err}") from None
    except sqlite3.DatabaseError as err:
        if db.refused:
            statement = query.split()[0].upper()
            raise ToolError(
                f"read-only database: {statement} is refused ({'; '.join(db.refused)}); SELECT queries only"
            ) from None
        if "interrupted" in str(err):
            raise ToolError(f"the query ran longer than {timeout_s:.1f} s and was stopped") from None
        raise ToolError(f"SQL error: {err}") from None
    header = [d[0] for d in cursor.description or []]
    lines = [" | ".join(header)] + [" | ".join(_cell(v) for v in row) for row in rows[:max_rows]]
    if len(rows) > max_rows:
        lines.append(f"... (more than {max_rows} rows; add LIMIT or aggregate)")
    elif not rows:
        lines.append("(no rows)")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS] + "..."


def sql_tool(path: str | Path, max_rows: int = MAX_ROWS) -> Tool:
    """The `sql` tool over the SQLite file at `path` (read-only)."""
    db = connect_read_only(path)
    description = (
        f"Run one read-only SQLite SELECT query and get up to {max_rows} rows back. "
        f"Tables:\n{schema_text(path)}"
    )

    def run(query: Any, timeout_s: float | None = None) -> str:
        limit = QUERY_TIMEOUT_S if timeout_s is None else min(QUERY_TIMEOUT_S, max(timeout_s, 0.1))
        return run_query(db, require_str(query, "query"), max_rows, limit)

    return Tool(
        name="sql",
        description=description,
        parameters=object_schema({"query": {"type": "string", "description": "a SQLite SELECT statement"}}),
        fn=run,
        takes_timeout=True,
        close=db.conn.close,
    )
