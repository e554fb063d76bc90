"""Writing a bundled data set: split JSONL files plus a README, atomically, never over other files.

`make_set` is the whole of a maker: check the folder, make the records, split them with the seed,
write the splits and the README the set's module words (this module adds the list of splits).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.data.splits import split_records
from lmfoundry.fsutil import atomic_dir
from lmfoundry.paths import lmf_home

OUTPUT_FILES = {"train.jsonl", "validation.jsonl", "test.jsonl", "README.md"}
FRACTIONS = (0.8, 0.1, 0.1)
Records = Callable[[int, int], list[dict[str, Any]]]  # (n, seed) -> records
# (n, seed, records, splits) -> README text; `splits` lists the split files and ends the README
Readme = Callable[[int, int, list[dict[str, Any]], str], str]


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


def make_set(
    name: str,
    records: Records,
    readme: Readme,
    n: int,
    seed: int,
    out_dir: Path | str | None = None,
    fractions: Sequence[float] = FRACTIONS,
) -> dict[str, Path]:
    """Write `records(n, seed)` as train/validation/test JSONL (+ README.md) into `out_dir` atomically.

    `out_dir` defaults to $LMF_HOME/data/NAME and is checked before any record is made: an
    existing directory is replaced only if it holds nothing but files a maker writes. The split
    is shuffled with `seed`; returns the split paths.
    """
    out = output_dir(out_dir, name)
    made = records(n, seed)
    splits = split_records(made, seed, fractions)
    sizes = "\n".join(f"- `{split}.jsonl`: {len(rows)} records" for split, rows in splits.items())
    listing = (
        f"Splits (shuffled with seed {seed}):\n{sizes}\n\n"
        "The same `--n` and `--seed` always give byte-identical files.\n"
    )
    return write_set(out, splits, readme(n, seed, made, listing))
