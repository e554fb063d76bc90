"""Make a bundled data set (train/validation/test JSONL) in the stage folder."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.finetune.data.synthetic import make
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.stage_kind import StageKind


@dataclass
class Options:
    dataset: str = "dialogsum-synthetic"
    """A bundled set name (`lmf data make --help` lists them)."""
    n: int = 2000
    """Records over all splits."""
    seed: int = 0
    fractions: tuple[float, ...] = (0.8, 0.1, 0.1)
    """train, validation, test shares."""


def files_digest(paths: list[Path]) -> str:
    """One sha256 over the files' names and bytes (downstream caches key on it)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run(ctx: StageContext, options: Options) -> dict[str, Any]:
    out = ctx.stage_dir / options.dataset
    ctx.progress.note(f"making {options.n} records")
    paths = make(options.dataset, n=options.n, seed=options.seed, out_dir=out, fractions=options.fractions)
    sizes = {name: sum(1 for _ in path.open(encoding="utf-8")) for name, path in paths.items()}
    return {"path": str(out), "sizes": sizes, "digest": files_digest(list(paths.values()))}


def fresh(ctx: StageContext, outputs: dict[str, Any]) -> bool:
    out = Path(outputs["path"])
    files = sorted(out.glob("*.jsonl"))
    return bool(files) and files_digest(files) == outputs.get("digest")


KIND = StageKind(Options, run, fresh, summary=(__doc__ or "").strip().splitlines()[0])
