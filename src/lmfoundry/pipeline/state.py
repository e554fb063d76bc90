"""`<workdir>/state.json`: what each stage last did, its cache key and outputs (written atomically).

A stage's cache key hashes its kind, its options as written, the bytes of files its options name
and the outputs of the stages it depends on. Same key and still-valid outputs = nothing to do.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.pipeline.spec import StageSpec, _strings

STATE_FILE = "state.json"
KEY_VERSION = 1


def state_path(workdir: Path) -> Path:
    return workdir / STATE_FILE


def load_state(workdir: Path) -> dict[str, Any]:
    path = state_path(workdir)
    if not path.is_file():
        return {"stages": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise LmfError(f"{path} is not valid JSON ({exc}); delete it to start the pipeline over") from exc
    if not isinstance(state, dict) or not isinstance(state.get("stages"), dict):
        raise LmfError(f"{path} is not a pipeline state file; delete it to start the pipeline over")
    return state


def save_state(workdir: Path, state: dict[str, Any]) -> None:
    state["updated"] = time.time()
    atomic_write_text(state_path(workdir), json.dumps(state, indent=2, default=str) + "\n")


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _file_digests(options: dict[str, Any], base_dir: Path) -> dict[str, str]:
    """sha256 of every existing file an option value names (edits to a config re-run the stage)."""

    found: dict[str, str] = {}
    for text in _strings(options):
        if "${" in text or "\n" in text or len(text) > 1024 or not text.strip():
            continue
        path = Path(text).expanduser()
        path = path if path.is_absolute() else base_dir / path
        try:
            if path.is_file() and path.stat().st_size < 64 * 1024 * 1024:
                found[text] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
    return found


def stage_key(stage: StageSpec, base_dir: Path, outputs: dict[str, dict[str, Any]]) -> str:
    payload = {
        "version": KEY_VERSION,
        "kind": stage.kind,
        "options": stage.options,
        "files": _file_digests(stage.options, base_dir),
        "inputs": {name: digest(outputs.get(name)) for name in stage.inputs()},
    }
    return digest(payload)
