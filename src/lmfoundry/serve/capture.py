"""Captured traffic: request/response pairs in SQLite, redacted and bounded, exportable as training
and evaluation data (the served model's traffic becomes the next fine-tuning set).

Schema changes are append-only migrations (the simonw/llm pattern): `MIGRATIONS` is applied in
order and each applied one is recorded in `_migrations`, so an old database upgrades in place and
a migration never runs twice. Never edit or reorder an existing entry; append a new one.

Export formats (accepted by `lmf data` / `lmf finetune` / `lmf eval`):
- sft:  `{"messages": [...conversation..., {"role": "assistant", "content": reply}]}`
- eval: `{"id", "input": last user message or prompt, "reference": reply}`
- dpo:  `{"prompt": [...conversation...], "chosen": reply, "rejected": reply}` from exchanges whose
        choices got different ratings through `POST /v1/feedback`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError

MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_exchanges",
        "CREATE TABLE exchanges (id TEXT PRIMARY KEY, created REAL NOT NULL, endpoint TEXT NOT NULL, "
        "model TEXT NOT NULL, request TEXT NOT NULL, response TEXT NOT NULL)",
    ),
    ("002_exchanges_created_index", "CREATE INDEX exchanges_created ON exchanges (created)"),
    (
        "003_feedback",
        "CREATE TABLE feedback (exchange_id TEXT NOT NULL REFERENCES exchanges (id) ON DELETE CASCADE, "
        "choice_index INTEGER NOT NULL, rating REAL NOT NULL, created REAL NOT NULL, "
        "PRIMARY KEY (exchange_id, choice_index))",
    ),
]
EXPORT_FORMATS = ("sft", "dpo", "eval")
REDACTED = "[REDACTED]"


class UnknownExchangeError(LmfError):
    """No captured exchange has that id (404)."""


def migrate(db: sqlite3.Connection, migrations: list[tuple[str, str]] | None = None) -> list[str]:
    """Apply the migrations (default: the capture schema's) this database lacks, in order."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    applied = []
    for name, sql in MIGRATIONS if migrations is None else migrations:
        if name in done:
            continue
        with db:
            db.execute(sql)
            db.execute("INSERT INTO _migrations (name, applied) VALUES (?, ?)", (name, time.time()))
        applied.append(name)
    return applied


class Redactor:
    """Replace every match of the given regexes in every string of a JSON-like value."""

    def __init__(self, patterns: list[str]) -> None:
        try:
            self.patterns = [re.compile(p) for p in patterns]
        except re.error as exc:
            raise InvalidInputError(f"invalid --redact pattern: {exc}") from exc

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            for pattern in self.patterns:
                value = pattern.sub(REDACTED, value)
            return value
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value


class CaptureStore:
    """Thread-safe recorder; `max_rows` / `max_days` bound what is kept (oldest dropped first)."""

    def __init__(
        self,
        path: str | Path,
        *,
        redact: list[str] | None = None,
        max_rows: int | None = None,
        max_days: float | None = None,
    ) -> None:
        if max_rows is not None and max_rows < 1:
            raise InvalidInputError("capture max_rows must be >= 1")
        if max_days is not None and max_days <= 0:
            raise InvalidInputError("capture max_days must be > 0")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redact = Redactor(redact or [])
        self.max_rows, self.max_days = max_rows, max_days
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA foreign_keys = ON")
        migrate(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, endpoint: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        request, response = self.redact(request), self.redact(response)
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO exchanges (id, created, endpoint, model, request, response) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    response["id"],
                    time.time(),
                    endpoint,
                    str(request.get("model", "")),
                    json.dumps(request),
                    json.dumps(response),
                ),
            )
            self._apply_retention()

    def add_feedback(self, exchange_id: str, choice_index: int, rating: float) -> None:
        with self._lock, self._db:
            row = self._db.execute("SELECT response FROM exchanges WHERE id = ?", (exchange_id,)).fetchone()
            if row is None:
                raise UnknownExchangeError(f"no captured exchange {exchange_id!r}")
            if not 0 <= choice_index < len(json.loads(row[0])["choices"]):
                raise InvalidInputError(f"exchange {exchange_id!r} has no choice {choice_index}")
            self._db.execute(
                "INSERT OR REPLACE INTO feedback (exchange_id, choice_index, rating, created) VALUES (?, ?, ?, ?)",
                (exchange_id, choice_index, rating, time.time()),
            )

    def _apply_retention(self) -> None:
        if self.max_days is not None:
            self._db.execute(
                "DELETE FROM exchanges WHERE created < ?", (time.time() - self.max_days * 86400,)
            )
        if self.max_rows is not None:
            self._db.execute(
                "DELETE FROM exchanges WHERE rowid NOT IN (SELECT rowid FROM exchanges ORDER BY created DESC, rowid DESC LIMIT ?)",
                (self.max_rows,),
            )

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM exchanges").fetchone()[0])

    def exchanges(self) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any], dict[int, float]]]:
        """(id, endpoint, request, response, {choice_index: rating}) oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, endpoint, request, response FROM exchanges ORDER BY created, rowid"
            ).fetchall()
            ratings: dict[str, dict[int, float]] = {}
            for exchange_id, index, rating in self._db.execute(
                "SELECT exchange_id, choice_index, rating FROM feedback"
            ):
                ratings.setdefault(exchange_id, {})[index] = rating
        for exchange_id, endpoint, request, response in rows:
            yield (
                exchange_id,
                endpoint,
                json.loads(request),
                json.loads(response),
                ratings.get(exchange_id, {}),
            )


def exchange_conversation(endpoint: str, request: dict[str, Any]) -> list[dict[str, str]] | None:
    """The request as chat turns (a completion's prompt is one user turn); None for a batch of prompts."""
    if endpoint == "chat":
        out = []
        for m in request["messages"]:
            content = m.get("content") or ""
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content)
            out.append({"role": "system" if m["role"] == "developer" else m["role"], "content": content})
        return out
    prompt = request.get("prompt")
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else None


def reply_text(endpoint: str, choice: dict[str, Any]) -> str:
    content = choice["message"]["content"] if endpoint == "chat" else choice["text"]
    return "" if content is None else str(content)


def prompt_text(conversation: list[dict[str, str]]) -> str:
    """What the user asked: the last user turn (the last turn of any role when there is none)."""
    users = [m["content"] for m in conversation if m["role"] == "user"]
    return users[-1] if users else conversation[-1]["content"]


def export_records(store: CaptureStore, fmt: str) -> Iterator[dict[str, Any]]:
    """Captured exchanges as records of format `fmt` (see the module docstring)."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidInputError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    for exchange_id, endpoint, request, response, ratings in store.exchanges():
        conversation = exchange_conversation(endpoint, request)
        choices = response.get("choices", [])
        if conversation is None or not choices:
            continue
        if fmt == "sft":
            reply = reply_text(endpoint, choices[0])
            if reply.strip():
                yield {"messages": [*conversation, {"role": "assistant", "content": reply}]}
        elif fmt == "eval":
            yield {
                "id": exchange_id,
                "input": prompt_text(conversation),
                "reference": reply_text(endpoint, choices[0]),
            }
        elif len(ratings) >= 2 and max(ratings.values()) > min(ratings.values()):
            best = max(ratings, key=lambda i: ratings[i])
            worst = min(ratings, key=lambda i: ratings[i])
            yield {
                "prompt": conversation,
                "chosen": reply_text(endpoint, choices[best]),
                "rejected": reply_text(endpoint, choices[worst]),
            }
