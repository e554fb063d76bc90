"""Shared fixtures: an isolated $LMF_HOME, offline hub settings, tiny model directories."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny_qwen2"), kind="qwen2")
