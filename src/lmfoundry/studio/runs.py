"""Run folders under the studio's runs root, as the Runs page shows them.

Three kinds are recognised by the files their writers leave: a training run (`metrics.jsonl`, from
every fine-tuning and alignment stage), a pipeline work folder (`state.json`) and an evaluation
comparison (`comparison.json`). Nothing here writes: the page polls `run_detail` with `after=N` and
gets only the metrics lines it has not seen, so a chart grows while a run trains.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.eval.compare import load_comparison
from lmfoundry.finetune.train.callbacks import METRICS_FILE
from lmfoundry.fsutil import read_json

PIPELINE_STATE = "state.json"  # lmfoundry.pipeline.state.STATE_FILE (pipeline sits above the studio)
COMPARISON = "comparison.json"
SUMMARY = "summary.json"
MAX_DEPTH = 4
RUNNING_WITHIN_S = 120.0  # a run without summary.json whose metrics grew this recently is "running"


def _kind(folder: Path) -> str | None:
    if (folder / METRICS_FILE).is_file():
        return "finetune"
    if (folder / PIPELINE_STATE).is_file():
        return "pipeline"
    if (folder / COMPARISON).is_file():
        return "eval"
    return None


def _walk(root: Path) -> list[Path]:
    found = []
    for current, dirs, _files in os.walk(root):
        depth = len(Path(current).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "checkpoint")
        if depth >= MAX_DEPTH:
            dirs[:] = []
        if _kind(Path(current)):
            found.append(Path(current))
    return found


def _status(folder: Path, kind: str) -> str:
    if kind == "eval":
        return "done"
    if kind == "pipeline":
        stages = _pipeline_stages(folder)
        states = {s["status"] for s in stages}
        for status in ("failed", "running"):
            if status in states:
                return status
        return "done" if stages else "empty"
    if (folder / SUMMARY).is_file():
        return "done"
    age = time.time() - (folder / METRICS_FILE).stat().st_mtime
    return "running" if age < RUNNING_WITHIN_S else "stopped"


def list_runs(root: Path) -> list[dict[str, Any]]:
    """Every run folder under `root` (newest first): id (its path under root), kind, status, updated."""
    if not root.is_dir():
        return []
    rows = []
    for folder in _walk(root):
        kind = _kind(folder)
        assert kind is not None
        rows.append(
            {
                "id": folder.relative_to(root).as_posix() or ".",
                "kind": kind,
                "status": _status(folder, kind),
                "updated": folder.stat().st_mtime,
            }
        )
    return sorted(rows, key=lambda r: -r["updated"])


def run_folder(root: Path, run_id: str) -> Path:
    """The folder of `run_id`, refusing anything outside the runs root (`..`, absolute paths, links)."""
    base = root.resolve()
    folder = (base / run_id).resolve()
    if not folder.is_relative_to(base) or not folder.is_dir() or _kind(folder) is None:
        raise InvalidInputError(f"no run {run_id!r} under {root}")
    return folder


def read_metrics_after(path: Path, after: int) -> tuple[list[dict[str, Any]], int]:
    """The complete lines of a metrics file past the first `after`, and the new line count.

    A line still being written (no newline yet) is left for the next poll."""
    if not path.is_file():
        return [], 0
    text = path.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1].splitlines()
    records = []
    for line in complete[after:]:
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                raise LmfError(f"{path}: a line is not JSON ({exc})") from exc
    return records, len(complete)


def _pipeline_stages(folder: Path) -> list[dict[str, Any]]:
    state = read_json(folder / PIPELINE_STATE, f"no pipeline state in {folder}")
    stages = state.get("stages", {}) if isinstance(state, dict) else {}
    rows = []
    for name, record in stages.items():
        row = {"name": name, "kind": record.get("kind"), "status": record.get("status", "?")}
        row.update({k: record[k] for k in ("seconds", "error", "outputs") if k in record})
        if record.get("kind") == "gate":
            row["gate_report"] = _gate_report(record)
        rows.append(row)
    return rows


def _gate_report(record: dict[str, Any]) -> str | None:
    """The gate stage's markdown table (passed), or its error (the table of a failed gate)."""
    report = (record.get("outputs") or {}).get("report")
    if report and Path(report).is_file():
        return Path(report).read_text(encoding="utf-8")
    return record.get("error")


def run_detail(root: Path, run_id: str, after: int = 0) -> dict[str, Any]:
    """What the Runs page shows of one run; for training runs only metrics past line `after`."""
    if after < 0:
        raise InvalidInputError("after must be >= 0")
    folder = run_folder(root, run_id)
    kind = _kind(folder)
    detail: dict[str, Any] = {"id": run_id, "kind": kind, "status": _status(folder, str(kind))}
    if kind == "finetune":
        detail["metrics"], detail["lines"] = read_metrics_after(folder / METRICS_FILE, after)
        if (folder / SUMMARY).is_file():
            detail["summary"] = read_json(folder / SUMMARY, "")
    elif kind == "pipeline":
        detail["stages"] = _pipeline_stages(folder)
    comparisons = sorted(folder.glob(f"**/{COMPARISON}"))[:8]
    detail["comparisons"] = [
        {"path": p.relative_to(folder).as_posix(), **load_comparison(p)} for p in comparisons
    ]
    return detail
