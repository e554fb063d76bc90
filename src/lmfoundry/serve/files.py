"""Uploaded files (`/v1/files`) and the SQLite state that batch jobs share with them.

Layout of a batch directory (`lmf serve --batch-dir DIR`):

    DIR/state.db         files, batches, their request lines and finished results (SQLite, WAL)
    DIR/files/<file-id>  file contents, written atomically (temp file + rename)

Why SQLite: a finished batch request is recorded in one transaction before the worker moves on,
so a server restart resumes from the next unfinished line and never loses or repeats a result.
Schema changes are append-only migrations (see `capture.migrate`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.serve.capture import migrate
from lmfoundry.serve.errors import NotFoundError

MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_files",
        "CREATE TABLE files (id TEXT PRIMARY KEY, filename TEXT NOT NULL, purpose TEXT NOT NULL, "
        "bytes INTEGER NOT NULL, created_at INTEGER NOT NULL)",
    ),
    (
        "002_batches",
        "CREATE TABLE batches (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, status TEXT NOT NULL, "
        "object TEXT NOT NULL)",
    ),
    (
        "003_batch_lines",
        "CREATE TABLE batch_lines (batch_id TEXT NOT NULL, line INTEGER NOT NULL, custom_id TEXT NOT NULL, "
        "body TEXT NOT NULL, PRIMARY KEY (batch_id, line))",
    ),
    (
        "004_batch_results",
        "CREATE TABLE batch_results (batch_id TEXT NOT NULL, line INTEGER NOT NULL, ok INTEGER NOT NULL, "
        "record TEXT NOT NULL, PRIMARY KEY (batch_id, line))",
    ),
]
UPLOAD_PURPOSES = ("batch",)
"""Purposes a client may upload; "batch_output" files are written by the server only."""


class UnknownFileError(NotFoundError):
    """No file has that id (404)."""


class StateDB:
    """One SQLite connection guarded by a lock (routes and the batch worker share it)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "files").mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(self.root / "state.db", check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        migrate(self.conn, MIGRATIONS)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex[:24]}"


def jsonl_lines(text: str) -> Iterator[tuple[int, Any, json.JSONDecodeError | None]]:
    """Each non-blank line of `text` as (line number, parsed value, None), or as
    (line number, None, the decoder's error) when the line is not valid JSON."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, exc
        else:
            yield number, value, None


def check_jsonl(content: bytes) -> int:
    """Raise InvalidInputError unless `content` is UTF-8 JSONL of objects; return the line count."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"the file is not UTF-8 text (byte {exc.start})") from exc
    count = 0
    for number, value, error in jsonl_lines(text):
        if error is not None:
            raise InvalidInputError(f"line {number} is not valid JSON: {error.msg}") from error
        if not isinstance(value, dict):
            raise InvalidInputError(f"line {number} is not a JSON object")
        count += 1
    if count == 0:
        raise InvalidInputError("the file holds no JSONL lines")
    return count


class FileStore:
    """File objects in the OpenAI shape, contents on disk, metadata in the state database."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def path(self, file_id: str) -> Path:
        return self.db.root / "files" / file_id

    def upload(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        """A client upload: only purpose "batch", and the content must be JSONL."""
        if purpose not in UPLOAD_PURPOSES:
            raise InvalidInputError(f"purpose {purpose!r} is not supported here (use 'batch')")
        check_jsonl(content)
        return self.write(new_file_id(), filename or "upload.jsonl", purpose, content.decode("utf-8"))

    def write(self, file_id: str, filename: str, purpose: str, text: str) -> dict[str, Any]:
        """Store (or replace, same id) a file: content first, then its row, so a row always has content."""
        atomic_write_text(self.path(file_id), text)
        row = (file_id, filename, purpose, len(text.encode("utf-8")), int(time.time()))
        with self.db.lock, self.db.conn:
            self.db.conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", row)
        return _file_object(row)

    def get(self, file_id: str) -> dict[str, Any]:
        with self.db.lock:
            row = self.db.conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise UnknownFileError(f"no file with id {file_id!r}")
        return _file_object(row)

    def content(self, file_id: str) -> bytes:
        self.get(file_id)
        return self.path(file_id).read_bytes()

    def list_all(
        self, purpose: str | None = None, limit: int = 10000, after: str | None = None, order: str = "desc"
    ) -> dict[str, Any]:
        direction = "DESC" if order == "desc" else "ASC"
        with self.db.lock:
            rows = self.db.conn.execute(
                f"SELECT * FROM files WHERE (? IS NULL OR purpose = ?) ORDER BY created_at {direction}, "
                f"rowid {direction}",
                (purpose, purpose),
            ).fetchall()
        return page([_file_object(r) for r in rows], limit, after)

    def delete(self, file_id: str) -> dict[str, Any]:
        self.get(file_id)
        with self.db.lock, self.db.conn:
            self.db.conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
        self.path(file_id).unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}


def page(items: list[dict[str, Any]], limit: int, after: str | None) -> dict[str, Any]:
    """An OpenAI cursor page: the `limit` items after the one whose id is `after`."""
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    data = items[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(items) > limit,
    }


def _file_object(row: tuple[Any, ...]) -> dict[str, Any]:
    file_id, filename, purpose, size, created_at = row
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": created_at,
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }
