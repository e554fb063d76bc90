"""The progress file of `lmf rag testset`: one JSON line per processed chunk, appended and flushed
as generation goes, so a killed run loses at most the chunk it was working on.

Line 1 is the run's configuration ({"testset_config": {...}}); every later line is one chunk's
record (its candidates with their filter verdicts, and the question kept, if any). A rerun with
the same configuration skips the chunks already recorded; a rerun with another configuration is
refused rather than silently mixed with (or silently discarding) the work already done.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError

CONFIG_KEY = "testset_config"


def progress_path(out: Path) -> Path:
    """`q.jsonl` -> `q.progress.jsonl` (next to the output, so a rerun finds it)."""
    return out.with_name(f"{out.stem}.progress.jsonl")


def summary_path(out: Path) -> Path:
    """`q.jsonl` -> `q.summary.json`: the per-filter survival report of the run."""
    return out.with_name(f"{out.stem}.summary.json")


def _config_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


def read_progress(path: Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunk records of an earlier run with this `config` ([] when there is no file).

    A last line cut off by a kill (no newline, or not JSON) is dropped from the file, so the next
    append starts on a clean line. Raises when the file belongs to another configuration."""
    if not path.is_file():
        return []
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]  # a kill mid-write leaves a line without its newline
    lines = complete.decode("utf-8").splitlines()
    if len(complete) < len(raw):
        with path.open("r+b") as f:
            f.truncate(len(complete))
    if not lines:
        return []
    try:
        head = json.loads(lines[0])[CONFIG_KEY]
        records = [json.loads(line) for line in lines[1:]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(
            f"{path} is not a `lmf rag testset` progress file ({exc}): move it away or pass --restart"
        ) from exc
    if head != config:
        raise InvalidInputError(
            f"{path} holds a run with another configuration ({_config_diff(head, config)}); rerun with the "
            "same options to resume it, pass --restart to discard it, or choose another --out"
        )
    return records


class ProgressWriter:
    """Appends chunk records to the progress file, one flushed and fsynced line each."""

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.is_file() or path.stat().st_size == 0
        self._file = path.open("a", encoding="utf-8")
        if fresh:
            self.append({CONFIG_KEY: config})

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()
