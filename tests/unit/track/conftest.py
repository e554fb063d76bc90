"""Track fixtures: a migrated MLflow sqlite db made once per session and copied into each test's
$LMF_HOME (creating one runs every MLflow migration, which takes seconds)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mlflow_template(request: pytest.FixtureRequest) -> Path:
    """An empty, migrated MLflow db, kept in pytest's cache folder between sessions (creating one
    runs every MLflow migration: 10+ seconds)."""
    import importlib.metadata
    import os

    from lmfoundry.track import runs

    version = importlib.metadata.version("mlflow")
    cache = getattr(request.config, "cache", None)
    folder = Path(cache.mkdir(f"lmf-mlflow-template-{version}")) if cache else Path(tempfile.mkdtemp())
    db = folder / "mlflow.db"
    if db.is_file():
        return db
    home = Path(tempfile.mkdtemp(dir=folder))
    old = os.environ.get("LMF_HOME")
    os.environ["LMF_HOME"] = str(home)
    try:
        runs.client().search_experiments()  # creates and migrates the db
    finally:
        if old is None:
            os.environ.pop("LMF_HOME", None)
        else:
            os.environ["LMF_HOME"] = old
    os.replace(home / "mlflow" / "mlflow.db", db)  # whole or not at all, for parallel sessions
    shutil.rmtree(home, ignore_errors=True)
    return db
    old = os.environ.get("LMF_HOME")
    os.environ["LMF_HOME"] = str(home)
    try:
        runs.client().search_experiments()  # creates and migrates the db
    finally:
        if old is None:
            os.environ.pop("LMF_HOME", None)
        else:
            os.environ["LMF_HOME"] = old
    return db


@pytest.fixture(autouse=True)
def mlflow_db(lmf_home: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LMF_TRACKING_URI", raising=False)
    monkeypatch.delenv("LMF_ARTIFACT_ROOT", raising=False)
    target = lmf_home / "mlflow" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mlflow_template, target)
    return target


def _make_adapter(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}', encoding="utf-8")
    return folder


@pytest.fixture
def make_adapter():  # type: ignore[no-untyped-def]
    """Make a directory that passes the registry's adapter check (a real LoRA is not needed here)."""
    return _make_adapter
