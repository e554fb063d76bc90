"""What a run leaves behind: the adapter (or whole model) and how to load it again.

A run folder holds `adapter/` (peft adapter files + tokenizer + `lmf_adapter.json`) or, for full
fine-tuning, `model/` (a transformers checkpoint + `lmf_adapter.json`). `lmf_adapter.json` names
the base model and the method, so loading can rebuild the same base: a QLoRA adapter was trained
on a 4-bit base, and reloading it onto that same quantized base reproduces the training logits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.fsutil import atomic_dir, atomic_write_text

ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
INFO_FILE = "lmf_adapter.json"


@dataclass
class ArtifactInfo:
    base_model: str
    method: str
    quant: dict[str, Any] = field(default_factory=dict)
    """QLoRA's base quantization (method, double_quant, block_size); empty otherwise."""

    @property
    def is_full(self) -> bool:
        return self.method == "full"


def save_artifact(model: Any, tokenizer: Any, run_dir: Path, info: ArtifactInfo) -> Path:
    """Write the trained adapter (or full model) into the run folder atomically."""
    target = run_dir / (MODEL_DIR if info.is_full else ADAPTER_DIR)
    if not info.is_full:
        for config in model.peft_config.values():
            config.base_model_name_or_path = info.base_model
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_text(tmp / INFO_FILE, json.dumps(info.__dict__, indent=2))
    return target


def find_artifact(path: str | Path) -> Path:
    """A run folder, an adapter folder or a full-model folder -> the folder holding lmf_adapter.json."""
    path = Path(path).expanduser()
    for candidate in (path, path / ADAPTER_DIR, path / MODEL_DIR):
        if (candidate / INFO_FILE).is_file():
            return candidate
    if (path / "adapter_config.json").is_file():
        raise LmfError(f"{path} is a peft adapter without {INFO_FILE}; pass the run folder it came from")
    raise LmfError(f"{path} is not a fine-tuning run or adapter folder (no {INFO_FILE})")


def read_info(folder: Path) -> ArtifactInfo:
    data = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    return ArtifactInfo(**data)


def load_base(info: ArtifactInfo) -> tuple[Any, Any]:
    """The base model the adapter was trained on (quantized the same way for QLoRA)."""
    from lmfoundry.models.load import load_hf_model

    model, tokenizer = load_hf_model(info.base_model)
    if info.method == "qlora":
        from lmfoundry.models.quantize import quantize_model

        quantize_model(model, **info.quant)
    return model, tokenizer


def load_tuned(path: str | Path) -> tuple[Any, Any, ArtifactInfo]:
    """(model in eval mode, tokenizer, info) of a run or adapter folder."""
    folder = find_artifact(path)
    info = read_info(folder)
    if info.is_full:
        from lmfoundry.models.load import load_hf_model

        model, tokenizer = load_hf_model(str(folder))
        return model, tokenizer, info
    from peft import PeftConfig, PeftModel

    base, tokenizer = load_base(info)
    config = PeftConfig.from_pretrained(str(folder))
    if info.method == "qlora":
        from lmfoundry.models.quantize import register_lora_layers

        register_lora_layers(config)
    model = PeftModel.from_pretrained(base, str(folder), config=config)
    model.eval()
    return model, tokenizer, info
