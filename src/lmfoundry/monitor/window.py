"""A window of captured traffic: the exchanges of a capture file, optionally cut to a time range.

A capture file is the SQLite database of `lmf serve --capture DB` (read-only here, so a live
server's database can be monitored from cron) or a JSONL file of the same rows, one exchange per
line: `{"id", "created", "endpoint", "model", "request", "response"}` plus an optional
`latency_s` (the warehouse export of DESIGN.md, or traffic from another server).

Latency: the SQLite capture stores when a reply was recorded (`created`, float seconds) and the
response body's own `created` (whole seconds, stamped when generation started), so the latency
read from it is that difference, with one-second resolution. A JSONL row's `latency_s` is used as
given.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.fsutil import read_jsonl
from lmfoundry.serve.capture import exchange_conversation, prompt_text, reply_text

_RELATIVE = re.compile(r"^-?(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Exchange:
    """One captured request and its first reply, reduced to what drift checks read."""

    id: str
    created: float
    model: str
    prompt: str
    output: str
    completion_tokens: int | None
    latency_s: float | None


@dataclass(frozen=True)
class Window:
    source: str
    exchanges: list[Exchange]
    start: float | None = None
    end: float | None = None

    @property
    def span_s(self) -> float:
        """Seconds from the first to the last exchange (0 for fewer than two)."""
        times = [e.created for e in self.exchanges]
        return max(times) - min(times) if len(times) > 1 else 0.0

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n": len(self.exchanges),
            "start": self.start,
            "end": self.end,
            "first": min((e.created for e in self.exchanges), default=None),
            "last": max((e.created for e in self.exchanges), default=None),
        }


def parse_time(text: str, now: float | None = None) -> float:
    """Unix seconds from an ISO 8601 date/datetime (UTC when it names no zone) or a duration before
    now such as `7d`, `-24h`, `30m`."""
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        return (time.time() if now is None else now) - float(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            f"cannot read time {text!r}: use ISO 8601 (2026-12-01, 2026-12-01T08:00) or a duration like 7d, 24h"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_range(text: str | None, now: float | None = None) -> tuple[float | None, float | None]:
    """`START..END` (either side may be empty) as unix seconds; None for no range."""
    if not text:
        return None, None
    if ".." not in text:
        raise InvalidInputError(f"a time range is START..END (either side may be empty), got {text!r}")
    start, _, end = text.partition("..")
    low = parse_time(start, now) if start.strip() else None
    high = parse_time(end, now) if end.strip() else None
    if low is not None and high is not None and high <= low:
        raise InvalidInputError(f"time range {text!r} ends before it starts")
    return low, high


def load_window(path: str | Path, start: float | None = None, end: float | None = None) -> Window:
    """The exchanges of a capture file (SQLite or .jsonl) created in [start, end)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"capture file not found: {path}")
    rows = _jsonl_rows(path) if path.suffix == ".jsonl" else _sqlite_rows(path)
    exchanges = []
    for row in rows:
        created = float(row["created"])
        if (start is not None and created < start) or (end is not None and created >= end):
            continue
        exchange = _exchange(row)
        if exchange is not None:
            exchanges.append(exchange)
    if not exchanges:
        where = "" if start is None and end is None else " in the given time range"
        raise InvalidInputError(f"{path}: no captured exchanges{where}")
    return Window(str(path), exchanges, start, end)


def _sqlite_rows(path: Path) -> list[dict[str, Any]]:
    try:
        db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT id, created, endpoint, model, request, response FROM exchanges ORDER BY created"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise InvalidInputError(f"{path} is not a capture database of `lmf serve --capture`: {exc}") from exc
    keys = ("id", "created", "endpoint", "model", "request", "response")
    return [
        {**dict(zip(keys, row, strict=True)), "request": json.loads(row[4]), "response": json.loads(row[5])}
        for row in rows
    ]


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line_no, record in read_jsonl(path, f"capture file not found: {path}"):
        missing = {"created", "endpoint", "request", "response"} - set(record)
        if missing:
            raise InvalidInputError(f"{path}:{line_no}: a capture record needs {', '.join(sorted(missing))}")
        rows.append({"id": str(record.get("id", line_no)), "model": "", **record})
    return rows


def _exchange(row: dict[str, Any]) -> Exchange | None:
    """The row as an Exchange; None for one with no conversation or no reply (a multi-prompt batch)."""
    response = row["response"]
    turns = exchange_conversation(row["endpoint"], row["request"])
    choices = response.get("choices") or []
    if not turns or not choices:
        return None
    latency = row.get("latency_s")
    if latency is None and isinstance(response.get("created"), int | float):
        latency = max(0.0, float(row["created"]) - float(response["created"]))
    tokens = (response.get("usage") or {}).get("completion_tokens")
    return Exchange(
        id=str(row["id"]),
        created=float(row["created"]),
        model=str(row.get("model") or ""),
        prompt=prompt_text(turns),
        output=reply_text(row["endpoint"], choices[0]),
        completion_tokens=None if tokens is None else int(tokens) // max(len(choices), 1),
        latency_s=None if latency is None else float(latency),
    )
