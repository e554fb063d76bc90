"""The shadow-pairs file: one JSONL record per mirrored request, written by the server and read
back by `lmf capture shadow-pairs` (no HTTP or model code here, so the CLI stays light).

Each record is also a `jsonl:` task example (`input` and `reference`, the other keys metadata), so
`lmf eval compare CHAMPION CHALLENGER --task jsonl:PAIRS` replays the real traffic offline:

    {"id", "created", "endpoint", "input": last user message or prompt,
     "reference": the served answer, "served_variant", "served_output",
     "shadow_variant", "shadow_output", "shadow_e2e_s"}

`split_pairs` turns the file into two `outputs.jsonl` folders, so the live answers themselves can be
judged side by side without re-running either model:
`lmf eval judge JUDGE --outputs DIR/served --pairwise DIR/shadow`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.fsutil import atomic_write_text, read_jsonl

NEEDED = frozenset({"id", "input", "served_output", "shadow_output"})


class PairStore:
    """Append-only JSONL of (served, shadow) answer pairs; thread-safe, one line per record."""

    def __init__(self, path: str | Path, redact: Callable[[Any], Any] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redact = redact
        self._lock = threading.Lock()

    def add(self, record: dict[str, Any]) -> None:
        if self.redact is not None:
            record = self.redact(record)
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line)


def answer_text(endpoint: str, body: dict[str, Any]) -> str:
    """The first choice's text of a chat or text completion body."""
    choices = body.get("choices") or [{}]
    if endpoint == "chat":
        return str((choices[0].get("message") or {}).get("content") or "")
    return str(choices[0].get("text") or "")


def request_input(endpoint: str, request: dict[str, Any]) -> str:
    """What the user asked: the last user message of a chat, or the (first) completion prompt."""
    if endpoint == "chat":
        users = [m for m in request.get("messages", []) if m.get("role") == "user"]
        content = users[-1].get("content") if users else ""
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content)
        return str(content or "")
    prompt = request.get("prompt")
    return prompt[0] if isinstance(prompt, list) and prompt and isinstance(prompt[0], str) else str(prompt)


def read_pairs(pairs: str | Path) -> list[dict[str, Any]]:
    """The records of a pairs file; an error names the first line without the fields a split needs,
    and an empty file (no request was mirrored yet)."""
    pairs = Path(pairs)
    records = []
    for line_no, record in read_jsonl(pairs, f"shadow pairs file not found: {pairs}"):
        if not NEEDED.issubset(record):
            raise InvalidInputError(f"{pairs}:{line_no}: a shadow pair needs {', '.join(sorted(NEEDED))}")
        records.append(record)
    if not records:
        raise InvalidInputError(f"{pairs}: no shadow pairs yet (the server writes one per mirrored request)")
    return records


def write_split(records: list[dict[str, Any]], out: str | Path) -> tuple[Path, Path]:
    """Write `out/served/outputs.jsonl` and `out/shadow/outputs.jsonl` (`{id, input, output}`, the
    format of `lmf eval run`) from pair records; returns the two folders."""
    out = Path(out)
    folders = (out / "served", out / "shadow")
    for folder, key in zip(folders, ("served_output", "shadow_output"), strict=True):
        rows = [{"id": r["id"], "input": r["input"], "output": r[key]} for r in records]
        atomic_write_text(
            folder / "outputs.jsonl", "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        )
    return folders


def split_pairs(pairs: str | Path, out: str | Path) -> tuple[Path, Path]:
    """`read_pairs` then `write_split`: the two `outputs.jsonl` folders of a pairs file."""
    return write_split(read_pairs(pairs), out)
