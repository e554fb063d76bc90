"""Batch jobs (`/v1/batches`) in the OpenAI batch format, run in the background at low priority.

Input: an uploaded JSONL file, one request a line:
    {"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions", "body": {...request...}}
Output: a JSONL file of finished requests, and an error file for the failed ones:
    {"id": "batch_req_...", "custom_id": "q1", "response": {"status_code": 200, "request_id": "...",
     "body": {...the endpoint's response...}}, "error": null}

Why this design:
- Low priority: the worker submits one request at a time, and only while the scheduler has no live
  request waiting or running. Live traffic that arrives meanwhile still joins the running batch
  (continuous batching) or queues behind one request (sequential backends).
- Restart safety: lines are copied into the state database when the batch is created, and each
  finished request is recorded in one transaction before the next starts. A restart resumes from
  the first line without a result; the output files are built from the recorded results only when
  every line has one, so each custom_id appears exactly once. A request interrupted by shutdown
  has no record and simply runs again.
- The requests go through the same handlers as live ones: same validation, limits and answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.serve import handlers
from lmfoundry.serve.errors import APIError, ConflictError, NotFoundError, bad_request, from_validation_errors
from lmfoundry.serve.files import FileStore, StateDB, jsonl_lines, page
from lmfoundry.serve.schema import ChatCompletionRequest, CompletionRequest

if TYPE_CHECKING:
    from lmfoundry.serve.handlers import ServerState

ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
COMPLETION_WINDOWS = {"24h": 24 * 3600}
MAX_LINES = 50_000
MAX_REPORTED_ERRORS = 20
TERMINAL = ("failed", "completed", "expired", "cancelled")
log = logging.getLogger("lmfoundry.serve")


class UnknownBatchError(NotFoundError):
    """No batch has that id (404)."""


class BatchStateError(ConflictError):
    """The batch is in a state that does not allow the operation (409)."""

    code = "invalid_batch_state"


@dataclass(frozen=True)
class Work:
    """One request line to run."""

    batch_id: str
    endpoint: str
    line: int
    custom_id: str
    body: dict[str, Any]


def parse_lines(text: str, endpoint: str) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """The (custom_id, body) of each request line, and the problems found (OpenAI `errors.data`)."""
    lines: list[tuple[str, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()

    def problem(number: int, code: str, message: str, param: str | None = None) -> None:
        errors.append({"code": code, "message": message, "param": param, "line": number})

    for number, item, error in jsonl_lines(text):
        if error is not None:
            problem(number, "invalid_json_line", f"not valid JSON: {error.msg}")
            continue
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(item, dict):
            problem(number, "invalid_request", "a line must be a JSON object")
        elif not isinstance(custom_id, str) or not custom_id:
            problem(number, "missing_custom_id", "custom_id must be a non-empty string", "custom_id")
        elif custom_id in seen:
            problem(number, "duplicate_custom_id", f"custom_id {custom_id!r} is used twice", "custom_id")
        elif item.get("method") != "POST":
            problem(number, "invalid_method", "method must be 'POST'", "method")
        elif item.get("url") != endpoint:
            problem(number, "mismatched_url", f"url must be the batch endpoint {endpoint!r}", "url")
        elif not isinstance(item.get("body"), dict):
            problem(number, "invalid_body", "body must be a JSON object (the request)", "body")
        else:
            seen.add(custom_id)
            lines.append((custom_id, item["body"]))
    if not lines and not errors:
        problem(0, "empty_file", "the input file holds no request lines")
    if len(lines) > MAX_LINES:
        problem(0, "too_many_requests", f"a batch holds at most {MAX_LINES} requests, got {len(lines)}")
    return lines, errors[:MAX_REPORTED_ERRORS]


class BatchStore:
    """Batch objects, their request lines and finished results, all in the state database."""

    def __init__(self, db: StateDB, files: FileStore) -> None:
        self.db, self.files = db, files

    # -- the API operations
    def create(
        self,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if endpoint not in ENDPOINTS:
            raise InvalidInputError(f"endpoint must be one of {', '.join(ENDPOINTS)}")
        if completion_window not in COMPLETION_WINDOWS:
            raise InvalidInputError(f"completion_window must be one of {', '.join(COMPLETION_WINDOWS)}")
        info = self.files.get(input_file_id)
        if info["purpose"] != "batch":
            raise InvalidInputError(f"file {input_file_id!r} has purpose {info['purpose']!r}, not 'batch'")
        lines, errors = parse_lines(self.files.content(input_file_id).decode("utf-8"), endpoint)
        now = int(time.time())
        batch = _new_batch(input_file_id, endpoint, completion_window, metadata, now)
        if errors:
            batch.update(status="failed", failed_at=now, errors={"object": "list", "data": errors})
            lines = []
        else:
            batch.update(status="in_progress", in_progress_at=now)
        with self.db.lock, self.db.conn:
            self._save(batch)
            self.db.conn.executemany(
                "INSERT INTO batch_lines VALUES (?, ?, ?, ?)",
                [(batch["id"], i, cid, json.dumps(body)) for i, (cid, body) in enumerate(lines)],
            )
        return self.get(batch["id"])

    def get(self, batch_id: str) -> dict[str, Any]:
        with self.db.lock:
            row = self.db.conn.execute("SELECT object FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                raise UnknownBatchError(f"no batch with id {batch_id!r}")
            batch: dict[str, Any] = json.loads(row[0])
            batch["request_counts"] = self._counts(batch_id)
        return batch

    def list_all(self, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        with self.db.lock:
            ids = [
                r[0]
                for r in self.db.conn.execute("SELECT id FROM batches ORDER BY created_at DESC, rowid DESC")
            ]
        return page([self.get(i) for i in ids], limit, after)

    def cancel(self, batch_id: str) -> dict[str, Any]:
        with self.db.lock, self.db.conn:
            batch = self.get(batch_id)
            if batch["status"] in ("cancelling", "cancelled"):
                return batch
            if batch["status"] in TERMINAL:
                raise BatchStateError(f"batch {batch_id!r} is already {batch['status']}")
            batch.update(status="cancelling", cancelling_at=int(time.time()))
            self._save(batch)
        return self.get(batch_id)

    # -- the worker's side
    def next_work(self) -> Work | None:
        """The first line without a result of the oldest batch in progress."""
        with self.db.lock:
            row = self.db.conn.execute(
                "SELECT l.batch_id, l.line, l.custom_id, l.body, b.object FROM batch_lines l "
                "JOIN batches b ON b.id = l.batch_id WHERE b.status = 'in_progress' AND NOT EXISTS "
                "(SELECT 1 FROM batch_results r WHERE r.batch_id = l.batch_id AND r.line = l.line) "
                "ORDER BY b.created_at, b.rowid, l.line LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        endpoint = json.loads(row[4])["endpoint"]
        return Work(row[0], endpoint, row[1], row[2], json.loads(row[3]))

    def record(self, work: Work, ok: bool, record: dict[str, Any]) -> None:
        """Commit one finished request (a repeated record of the same line is ignored)."""
        with self.db.lock, self.db.conn:
            self.db.conn.execute(
                "INSERT OR IGNORE INTO batch_results VALUES (?, ?, ?, ?)",
                (work.batch_id, work.line, int(ok), json.dumps(record)),
            )

    def settle(self, now: float | None = None) -> list[str]:
        """Finish the batches that are done, cancelled or past their window; return their ids."""
        now = time.time() if now is None else now
        with self.db.lock:
            rows = self.db.conn.execute(
                "SELECT id, status, object FROM batches WHERE status IN ('in_progress', 'cancelling', 'finalizing')"
            ).fetchall()
        settled = []
        for batch_id, status, raw in rows:
            if status == "cancelling":
                self._finalize(batch_id, "cancelled")
            elif now > json.loads(raw)["expires_at"]:
                self._finalize(batch_id, "expired")
            elif status == "finalizing" or self._pending(batch_id) == 0:
                self._finalize(batch_id, "completed")
            else:
                continue
            settled.append(batch_id)
        return settled

    # -- internals
    def _save(self, batch: dict[str, Any]) -> None:
        stored = {k: v for k, v in batch.items() if k != "request_counts"}
        self.db.conn.execute(
            "INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?)",
            (batch["id"], batch["created_at"], batch["status"], json.dumps(stored)),
        )

    def _counts(self, batch_id: str) -> dict[str, int]:
        conn = self.db.conn
        total = conn.execute("SELECT COUNT(*) FROM batch_lines WHERE batch_id = ?", (batch_id,)).fetchone()[0]
        done = dict(
            conn.execute(
                "SELECT ok, COUNT(*) FROM batch_results WHERE batch_id = ? GROUP BY ok", (batch_id,)
            ).fetchall()
        )
        return {"total": total, "completed": done.get(1, 0), "failed": done.get(0, 0)}

    def _pending(self, batch_id: str) -> int:
        counts = self._counts(batch_id)
        return counts["total"] - counts["completed"] - counts["failed"]

    def _finalize(self, batch_id: str, status: str) -> None:
        """Write the output and error files from the recorded results, then mark the batch `status`.

        Idempotent: file ids derive from the batch id, so a finalize interrupted by a crash is
        redone on restart and replaces the same files.
        """
        with self.db.lock:
            batch = self.get(batch_id)
            now = int(time.time())
            batch.update(status="finalizing", finalizing_at=batch.get("finalizing_at") or now)
            with self.db.conn:
                self._save(batch)
                if status == "expired":
                    self._expire_pending(batch_id)
            results = self.db.conn.execute(
                "SELECT ok, record FROM batch_results WHERE batch_id = ? ORDER BY line", (batch_id,)
            ).fetchall()
        outputs = [record for ok, record in results if ok]
        failures = [record for ok, record in results if not ok]
        suffix = batch_id.removeprefix("batch_")
        if outputs:
            name = f"{batch_id}_output.jsonl"
            batch["output_file_id"] = self.files.write(
                f"file-{suffix}-output", name, "batch_output", _jsonl(outputs)
            )["id"]
        if failures:
            name = f"{batch_id}_error.jsonl"
            batch["error_file_id"] = self.files.write(
                f"file-{suffix}-error", name, "batch_output", _jsonl(failures)
            )["id"]
        batch.update({"status": status, f"{status}_at": int(time.time())})
        with self.db.lock, self.db.conn:
            self._save(batch)

    def _expire_pending(self, batch_id: str) -> None:
        pending = self.db.conn.execute(
            "SELECT line, custom_id FROM batch_lines l WHERE batch_id = ? AND NOT EXISTS "
            "(SELECT 1 FROM batch_results r WHERE r.batch_id = l.batch_id AND r.line = l.line)",
            (batch_id,),
        ).fetchall()
        for line, custom_id in pending:
            error = {
                "code": "batch_expired",
                "message": "the request did not run within the completion window",
            }
            record = {
                "id": _request_id("batch_req"),
                "custom_id": custom_id,
                "response": None,
                "error": error,
            }
            self.db.conn.execute(
                "INSERT OR IGNORE INTO batch_results VALUES (?, ?, 0, ?)",
                (batch_id, line, json.dumps(record)),
            )


def _new_batch(
    input_file_id: str, endpoint: str, window: str, metadata: dict[str, str] | None, now: int
) -> dict[str, Any]:
    return {
        "id": _request_id("batch"),
        "object": "batch",
        "endpoint": endpoint,
        "model": None,
        "errors": None,
        "input_file_id": input_file_id,
        "completion_window": window,
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": now,
        "in_progress_at": None,
        "expires_at": now + COMPLETION_WINDOWS[window],
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "metadata": metadata,
    }


def _request_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _jsonl(records: list[str]) -> str:
    return "".join(record + "\n" for record in records)


# ---------------------------------------------------------------------------------------------
# Running the lines


class _Retry(Exception):
    """The request could not run now (queue full, server stopping): leave it unrecorded."""


def live_idle(scheduler: Any) -> bool:
    """True when no live request waits or runs (the only time batch work may start)."""
    return not scheduler.waiting and scheduler.active() == 0


async def run_line(state: ServerState, work: Work) -> tuple[bool, dict[str, Any]]:
    """Run one request line through the live handlers; (ok, output record)."""
    from pydantic import ValidationError

    chat = work.endpoint == "/v1/chat/completions"
    status, body = 200, None
    try:
        request = (ChatCompletionRequest if chat else CompletionRequest).model_validate(work.body)
        if request.stream:
            raise bad_request("stream is not supported in batch requests", "stream")
        body = await (handlers.chat_completions if chat else handlers.completions)(state, request)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = from_validation_errors([dict(e) for e in exc.errors()])
        status, body = error.status, error.body()
    except Exception as exc:
        if state.served.scheduler.stopping:
            raise _Retry("the server is shutting down") from exc
        error = exc if isinstance(exc, APIError) else handlers.to_api_error(exc)
        if error.status == 429:
            raise _Retry(error.message) from exc
        status, body = error.status, error.body()
    response = {"status_code": status, "request_id": _request_id("req"), "body": body}
    return status == 200, {
        "id": _request_id("batch_req"),
        "custom_id": work.custom_id,
        "response": response,
        "error": None,
    }


class BatchWorker:
    """The background loop: settle finished batches, wait for an idle scheduler, run one line."""

    def __init__(self, store: BatchStore, state: ServerState, poll_s: float = 0.1) -> None:
        self.store, self.state, self.poll_s = store, state, poll_s
        self.processed = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a storage error must not end batch processing for good
                log.exception("batch worker step failed; retrying")
                await asyncio.sleep(self.poll_s * 10)

    async def step(self) -> None:
        """Settle finished batches, then run (and record) at most one line."""
        self.store.settle()
        work = self.store.next_work()
        if work is None:
            await self._sleep()
            return
        while not live_idle(self.state.served.scheduler):
            await asyncio.sleep(self.poll_s / 2)
        try:
            ok, record = await run_line(self.state, work)
        except _Retry:
            await asyncio.sleep(self.poll_s * 5)
            return
        self.store.record(work, ok, record)
        self.processed += 1

    async def _sleep(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s * 5)
        self._wake.clear()


class BatchService:
    """Files + batches + worker on one batch directory; `start()`/`stop()` follow the app's lifespan."""

    def __init__(self, root: str | Path, state: ServerState) -> None:
        self.db = StateDB(root)
        self.files = FileStore(self.db)
        self.batches = BatchStore(self.db, self.files)
        self.worker = BatchWorker(self.batches, state)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the worker on the running event loop (resuming any unfinished batch)."""
        self._task = asyncio.get_running_loop().create_task(self.worker.run(), name="lmf-batch-worker")

    async def stop(self) -> None:
        """Stop the worker; a request it was running stays unrecorded and runs again on restart."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def close(self) -> None:
        self.db.close()
