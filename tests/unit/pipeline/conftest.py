"""Pipeline fixtures: tiny LoRA adapters, a long-context tiny model and a pipeline YAML writer
(the MLflow db fixture is shared, in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml


@pytest.fixture(scope="session")
def tiny_adapters(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two LoRA adapters for the tiny Llama with different non-identity weights (they change outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("adapters")
    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
        config = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
                            init_lora_weights=False)  # fmt: skip
        get_peft_model(model, config).save_pretrained(root / f"adapter{seed}")
        paths.append(root / f"adapter{seed}")
    return paths


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[..., Path]:
    def write(stages: list[dict[str, Any]], name: str = "tiny", **top: Any) -> Path:
        path = tmp_path / f"{name}.yaml"
        data = {"name": name, "workdir": str(tmp_path / "work"), "tracking": {"enabled": False}, **top,
                "stages": stages}  # fmt: skip
        path.write_text(f"# lmf pipeline run {path.name}\n" + yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def tiny_long_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with a 2048-token context: whole synthetic dialogues fit its near-byte-level BPE."""
    from tiny import build_model, build_tokenizer

    path = tmp_path_factory.mktemp("tiny_long")
    tokenizer = build_tokenizer()
    build_model("llama", vocab_size=len(tokenizer), max_position_embeddings=2048).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
