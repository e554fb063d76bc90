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
from lmfoundry.finetune.train.reward_head import as_reward_model, load_full_reward_model
from lmfoundry.fsutil import atomic_dir, atomic_write_text
from lmfoundry.models.load import load_hf_model
from lmfoundry.quantize.modules import quantize_model, register_lora_layers
from lmfoundry.quiet import quiet_loading

ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
INFO_FILE = "lmf_adapter.json"


@dataclass
class ArtifactInfo:
    base_model: str
    """Store/packaged model, model folder, or the run folder of an earlier stage (e.g. SFT)."""
    method: str
    quant: dict[str, Any] = field(default_factory=dict)
    """QLoRA's base quantization (method, double_quant, block_size); empty otherwise."""
    stage: str = "sft"
    """sft / dpo / ppo: a causal LM; reward: a scalar-head sequence classifier."""
    template: str = "auto"
    """The prompt template of the training data (scoring renders prompts the same way)."""

    @property
    def is_full(self) -> bool:
        return self.method == "full"


def save_artifact(
    model: Any, tokenizer: Any, run_dir: Path, info: ArtifactInfo, state_dict: dict[str, Any] | None = None
) -> Path:
    """Write the trained adapter (or full model) into the run folder atomically.

    `state_dict`: the model's full, gathered state under FSDP (`Ranks.full_state_dict`), whose
    own parameters are shards; None otherwise (the model's tensors are saved)."""
    target = run_dir / (MODEL_DIR if info.is_full else ADAPTER_DIR)
    if not info.is_full:
        for config in model.peft_config.values():
            config.base_model_name_or_path = info.base_model
    with atomic_dir(target) as tmp, quiet_loading():
        if info.is_full:
            model.save_pretrained(tmp, state_dict=state_dict)
        else:
            model.save_pretrained(tmp, state_dict=state_dict, save_embedding_layers=_saves_embeddings(model))
        tokenizer.save_pretrained(tmp)
        atomic_write_text(tmp / INFO_FILE, json.dumps(info.__dict__, indent=2))
    return target


def _saves_embeddings(model: Any) -> bool:
    """peft's `save_embedding_layers="auto"` without its lookup of the base model's config by name
    (our base names are store names, so that lookup only warns): save the embedding layers when one
    is a target. lmfoundry never resizes the vocabulary, the other case "auto" covers."""
    from peft.utils.other import EMBEDDING_LAYER_NAMES

    targets = getattr(model.peft_config[model.active_adapter], "target_modules", None) or ()
    if isinstance(targets, str):
        return any(name in targets for name in EMBEDDING_LAYER_NAMES)
    return bool(set(targets) & set(EMBEDDING_LAYER_NAMES))


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


def is_run(name: str) -> bool:
    """True when `name` is a fine-tuning run or adapter folder (not a model name or model folder)."""
    path = Path(name).expanduser()
    return path.is_dir() and any(
        (c / INFO_FILE).is_file() for c in (path, path / ADAPTER_DIR, path / MODEL_DIR)
    )


def base_reference(name: str) -> str:
    """How an artifact names its base: run folders as absolute paths (cwd-independent reloads)."""
    return str(Path(name).expanduser().resolve()) if is_run(name) else name


def load_starting_point(name: str) -> tuple[Any, Any]:
    """A causal LM to train further: a model, or an earlier run's model with its adapter merged.

    Alignment usually starts from an SFT run; merging its adapter gives a plain model whose
    weights are the SFT policy, so the new adapter (and the reference = adapter disabled) sit on it.
    """
    if not is_run(name):
        return load_hf_model(name)
    model, tokenizer, info = load_tuned(name)
    if info.stage == "reward":
        raise LmfError(f"{name} is a reward model; a policy must start from a causal LM or an SFT/DPO run")
    if not info.is_full:
        if info.method == "qlora":
            raise LmfError(f"{name} is a QLoRA run on a 4-bit base; merge it (`lmf adapters merge`) first")
        model = model.merge_and_unload()
    return model, tokenizer


def load_base(info: ArtifactInfo) -> tuple[Any, Any]:
    """The base model the adapter was trained on (quantized the same way for QLoRA)."""
    model, tokenizer = load_starting_point(info.base_model)
    if info.stage == "reward":
        model = as_reward_model(model, tokenizer, seed=0)
    if info.method == "qlora":
        quantize_model(model, **info.quant)
    return model, tokenizer


def load_tuned(path: str | Path) -> tuple[Any, Any, ArtifactInfo]:
    """(model in eval mode, tokenizer, info) of a run or adapter folder."""
    folder = find_artifact(path)
    info = read_info(folder)
    if info.is_full:
        if info.stage == "reward":
            model, tokenizer = load_full_reward_model(folder)
        else:
            model, tokenizer = load_hf_model(str(folder))
        model.eval()
        return model, tokenizer, info
    from peft import PeftConfig, PeftModel

    base, tokenizer = load_base(info)
    config = PeftConfig.from_pretrained(str(folder))
    if info.method == "qlora":
        register_lora_layers(config)
    model = PeftModel.from_pretrained(base, str(folder), config=config)
    model.eval()
    return model, tokenizer, info
