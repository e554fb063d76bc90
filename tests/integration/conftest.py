"""Integration tests share one $LMF_HOME with the packaged model pulled once per session (~20 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

PACKAGED = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def packaged_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    from lmfoundry.models import store

    home = tmp_path_factory.mktemp("packaged_home")
    previous = os.environ.get("LMF_HOME")
    os.environ["LMF_HOME"] = str(home)
    try:
        store.pull(PACKAGED)
    finally:
        if previous is not None:
            os.environ["LMF_HOME"] = previous
    return home


@pytest.fixture(autouse=True)
def lmf_home(packaged_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Overrides the unit tests' empty store: integration tests see the pulled packaged model."""
    monkeypatch.setenv("LMF_HOME", str(packaged_home))
    return packaged_home
