"""Shared fixtures: an isolated $LMF_HOME, offline hub settings, tiny model directories."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.append(
    str(Path(__file__).parent.parent / "bench")
)  # bench helpers with unit tests (rag_support), last: never shadows
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LMF_TRACK", "0")  # CLI runs skip MLflow unless a test turns it on
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# As `lmf serve` does (cli/serve.py): OpenMP spin-waiting between the server's scheduler thread and
# the test thread made each in-process request ~10x slower on a loaded 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(autouse=True)
def lmf_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty store unless it asks for the shared one."""
    home = tmp_path_factory.mktemp("lmf_home")
    monkeypatch.setenv("LMF_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny_llama"), kind="llama")


@pytest.fixture(scope="session")
def tiny_long_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny llama with a 2048-position context: room for tool descriptions in the prompt."""
    from tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny_long"), kind="llama", max_position_embeddings=2048)


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny_qwen2"), kind="qwen2")


@pytest.fixture(scope="session")
def mlflow_template(request: pytest.FixtureRequest) -> Path:
    """An empty, migrated MLflow db, kept in pytest's cache folder between sessions (creating one
    runs every MLflow migration: 10+ seconds)."""
    import importlib.metadata
    import shutil
    import tempfile

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


@pytest.fixture
def mlflow_db(lmf_home: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the migrated MLflow db in this test's $LMF_HOME (default tracking settings)."""
    import shutil

    monkeypatch.delenv("LMF_TRACKING_URI", raising=False)
    monkeypatch.delenv("LMF_ARTIFACT_ROOT", raising=False)
    target = lmf_home / "mlflow" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mlflow_template, target)
    return target


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The packaged sentence embedder, loaded once per session (rag, embed and serve tests)."""
    from lmfoundry.embed.sentence import load_embedder

    return load_embedder()
