"""What a stage sees while it runs: its options' base folder, its own folder, earlier outputs,
a progress handle and whether runs are tracked."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class StageProgress(Protocol):
    """A stage reports long work through this (the runner draws it as a bar)."""

    def total(self, n: int, label: str = "") -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def note(self, text: str) -> None: ...


class NullProgress:
    def total(self, n: int, label: str = "") -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def note(self, text: str) -> None:
        pass


@dataclass
class StageContext:
    name: str
    base_dir: Path
    """The pipeline file's folder: relative paths in options resolve against it."""
    workdir: Path
    outputs: dict[str, dict[str, Any]]
    """Recorded outputs of the stages before this one, by stage name."""
    tracking: bool = False
    progress: StageProgress = field(default_factory=NullProgress)

    @property
    def stage_dir(self) -> Path:
        """This stage's own folder under the pipeline's work folder."""
        return self.workdir / self.name

    def path(self, value: str | Path) -> Path:
        """An option path: `~` expanded, relative ones against the pipeline file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()
