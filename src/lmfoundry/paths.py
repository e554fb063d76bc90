"""Where lmfoundry keeps its files: $LMF_HOME, default ~/.cache/lmfoundry."""

from __future__ import annotations

import os
from pathlib import Path


def lmf_home() -> Path:
    """The root of the model store, caches and run folders."""
    return Path(os.environ.get("LMF_HOME", Path.home() / ".cache" / "lmfoundry")).expanduser()


def models_dir() -> Path:
    return lmf_home() / "models"


def profiles_dir() -> Path:
    return lmf_home() / "profiles"
