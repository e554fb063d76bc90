"""Writing a bundled data set: split JSONL files plus a README, atomically, never over other files."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.fsutil import atomic_dir
from lmfoundry.paths import lmf_home

OUTPUT_FILES = {"train.jsonl", "validation.jsonl", "test.jsonl", "README.md"}


def output_dir(out_dir: Path | str | None, name: str) -> Path:
    """`out_dir` (default $LMF_HOME/data/NAME), refused if it holds files a maker did not write."""
    out = Path(out_dir).expanduser() if out_dir is not None else lmf_home() / "data" / name
    if out.exists():
        if not out.is_dir():
            raise LmfError(f"{out} exists and is not a directory")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
        if foreign:
            raise LmfError(f"refusing to replace {out}: it holds other files ({', '.join(foreign[:5])})")
    return out


def write_set(out: Path, splits: Mapping[str, Sequence[Mapping[str, Any]]], readme: str) -> dict[str, Path]:
    """Replace `out` with one `{split}.jsonl` per split and README.md; return the split paths."""
    with atomic_dir(out) as tmp:
        for name, records in splits.items():
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            (tmp / f"{name}.jsonl").write_text(lines, encoding="utf-8")
        (tmp / "README.md").write_text(readme, encoding="utf-8")
    return {name: out / f"{name}.jsonl" for name in splits}
