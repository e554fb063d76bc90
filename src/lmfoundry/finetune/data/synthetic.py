"""The bundled data sets `lmf data make NAME` can write: name -> maker.

`MAKERS` maps a set name to its maker(n, seed, out_dir); add a set by adding its module and a
line here. Every maker writes split JSONL files plus a README, atomically (`synthetic_io.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.data.synthetic_dialogsum import make_dialogsum_synthetic
from lmfoundry.finetune.data.synthetic_preferences import make_preferences_synthetic

MAKERS: dict[str, Callable[..., dict[str, Path]]] = {
    "dialogsum-synthetic": make_dialogsum_synthetic,
    "preferences-synthetic": make_preferences_synthetic,
}


def make(name: str, n: int, seed: int, out_dir: Path | str | None = None, **kwargs: Any) -> dict[str, Path]:
    """Run the maker registered as `name`; an unknown name lists the known ones."""
    if name not in MAKERS:
        raise LmfError(f"unknown data set {name!r} (known: {', '.join(sorted(MAKERS))})")
    return MAKERS[name](n=n, seed=seed, out_dir=out_dir, **kwargs)
