"""What a pipeline stage kind is: an options dataclass, `run(ctx, options) -> outputs` and, optionally,
`fresh(ctx, outputs) -> bool` (may a cached result be reused as is?).

Each module in `stages/` defines `KIND = StageKind(...)`; `lmfoundry.plugins` lists them under
the `stage` kind by their YAML names, and a package adds its own the same way (see
docs/architecture.md, "Where to add a stage kind").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmfoundry import plugins
from lmfoundry.errors import InvalidInputError


@dataclass(frozen=True)
class StageKind:
    options: type
    """A dataclass: the stage's `options:` in the pipeline YAML (unknown keys are errors)."""
    run: Callable[..., dict[str, Any]]
    fresh: Callable[..., bool] | None = None
    summary: str = ""
    """One line for `--help` and docs."""


def stage_kind(name: str) -> StageKind:
    """The stage kind a pipeline's `kind:` names; an unknown one is an error naming the known ones."""
    kind = plugins.get("stage", name)
    if not isinstance(kind, StageKind):
        raise InvalidInputError(f"stage kind {name!r} is a {type(kind).__name__}, not a StageKind")
    return kind


def stage_names() -> list[str]:
    return plugins.names("stage")
