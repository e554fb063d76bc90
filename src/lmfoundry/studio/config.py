"""What the studio needs to know beyond the served model: where runs live, where votes go, CORS."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lmfoundry.paths import lmf_home


def default_preferences() -> Path:
    return lmf_home() / "studio" / "preferences.jsonl"


@dataclass(frozen=True)
class StudioConfig:
    """Options of the `/ui` pages; the defaults are those of `lmf serve`."""

    enabled: bool = True
    """Mount `/ui` at all (`lmf serve --no-ui`-style embedding can turn it off)."""
    runs_root: Path = Path("runs")
    """Folder searched for fine-tuning, pipeline and evaluation run folders (relative to the cwd)."""
    preferences: Path | None = None
    """JSONL file arena votes are appended to (default $LMF_HOME/studio/preferences.jsonl)."""
    tracking: bool = True
    """Read MLflow: the registry and registered prompts. False offers the built-in prompts only and
    no registry, and never imports MLflow (seconds saved per page on a cold process)."""
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    """Origins allowed to call the server from another page; none (CORS off) by default."""

    def preferences_path(self) -> Path:
        return self.preferences or default_preferences()
