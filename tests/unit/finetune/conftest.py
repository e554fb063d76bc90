"""Fixtures for the fine-tuning tests (test_ft_*): a small summarization set and config factory."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

NAMES = ["Anna", "Ben", "Carl", "Dora", "Eve"]
PLACES = ["the park", "the shop", "school", "the beach"]


@pytest.fixture(scope="session")
def ft_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 summarization records with a learnable pattern (the summary repeats dialogue words)."""
    path = tmp_path_factory.mktemp("ft_data") / "train.jsonl"
    records = []
    for i in range(40):
        name, place = NAMES[i % 5], PLACES[i % 4]
        dialogue = f"Person1: Hello {name}. Person2: Hi, I am going to {place}."
        records.append({"dialogue": dialogue, "summary": f"{name} goes to {place}."})
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def ft_config(tiny_llama_dir: Path, ft_data: Path, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """A config mapping for a fast run on the tiny Llama; keyword arguments update sections."""

    def make(name: str = "lora", **sections: dict[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = {
            "model": {"name": str(tiny_llama_dir)},
            "data": {"path": str(ft_data), "template": "plain", "max_length": 64, "eval_limit": 8},
            "method": {"name": name},
            "training": {
                "max_steps": 6,
                "lr": 1e-2,
                "batch_size": 4,
                "eval_every": 3,
                "save_every": 3,
                "threads": 1,
            },
            "output_dir": str(tmp_path / f"run-{name}"),
        }
        for key, value in sections.items():
            if isinstance(value, dict):
                config[key] = {**config.get(key, {}), **value}
            else:
                config[key] = value
        return config

    return make
