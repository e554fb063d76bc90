"""Track fixtures: every test gets a fresh copy of the migrated MLflow db (see tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _every_test_has_an_mlflow_db(mlflow_db: Path) -> Path:
    return mlflow_db


def _make_adapter(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}', encoding="utf-8")
    return folder


@pytest.fixture
def make_adapter():  # type: ignore[no-untyped-def]
    """Make a directory that passes the registry's adapter check (a real LoRA is not needed here)."""
    return _make_adapter
