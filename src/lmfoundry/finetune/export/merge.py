"""Merge a trained adapter into its base weights and register the result in the model store.

LoRA, QLoRA, AdaLoRA and IA3 fold into the linear weights (peft `merge_and_unload`), so the merged
model runs anywhere a plain model does (llama.cpp after `lmf export gguf`). Prompt-style methods
(prefix, prompt, P-tuning, adaption prompts) add tokens or gates rather than weight deltas; they
cannot be merged and are served as adapters instead. QLoRA merges into the dequantized 4-bit base
it was trained on, so the merged model computes what the trained adapter computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.config import MERGEABLE
from lmfoundry.finetune.train.artifacts import ADAPTER_DIR, INFO_FILE, ArtifactInfo, find_artifact, load_tuned
from lmfoundry.fsutil import atomic_dir
from lmfoundry.models import store
from lmfoundry.models.load import load_hf_model
from lmfoundry.quantize.modules import dequantize_model
from lmfoundry.quiet import quiet_loading


def merged_model(path: str | Path) -> tuple[Any, Any, ArtifactInfo]:
    """(plain transformers model with the adapter folded in, tokenizer, info)."""
    model, tokenizer, info = load_tuned(path)
    if info.is_full:
        return model, tokenizer, info
    if info.method not in MERGEABLE:
        raise LmfError(
            f"a {info.method} adapter adds virtual tokens or gated prompts, not weight deltas, so it "
            f"cannot be merged; serve it as an adapter (lmfoundry.load(base, adapters=[...])) instead"
        )
    if info.method == "qlora":
        dequantize_model(model.get_base_model())
    merged = model.merge_and_unload()
    merged.eval()
    return merged, tokenizer, info


@dataclass
class ExportSource:
    """What `lmf export` writes: a model, or a fine-tuning run with its adapter merged."""

    model: Any
    tokenizer: Any
    base: str
    """The model the weights started from (a run's base model, else the name itself)."""
    label: str
    """The stem of default output names."""
    is_run: bool


def run_artifact(model_or_run: str) -> Path | None:
    """The adapter (or model) folder when `model_or_run` is a fine-tuning run; None for a model."""
    try:
        return find_artifact(model_or_run)
    except LmfError:
        path = Path(model_or_run).expanduser()
        if (path / "resolved_config.yaml").is_file():
            raise LmfError(
                f"{path} is a fine-tuning run with no saved adapter or model (no {ADAPTER_DIR}/{INFO_FILE}); "
                "did its training finish?"
            ) from None
        return None


def load_source(model_or_run: str) -> ExportSource:
    """A store model, model directory, or fine-tuning run (its adapter merged), loaded in fp32."""
    artifact = run_artifact(model_or_run)
    if artifact is not None:
        model, tokenizer, info = merged_model(artifact)
        return ExportSource(model, tokenizer, info.base_model, Path(model_or_run).resolve().name, True)
    model, tokenizer = load_hf_model(model_or_run)
    return ExportSource(model, tokenizer, model_or_run, store.default_name(model_or_run), False)


def merge_to_store(path: str | Path, name: str, *, force: bool = False) -> Path:
    """Merge the adapter of a run (or adapter folder) and write it as store entry `name`."""

    folder = store.entry_dir(name)
    if (folder / store.MANIFEST).is_file() and not force:
        raise LmfError(f"model {name!r} already exists in the store (pass --force to replace it)")
    artifact = find_artifact(path)
    model, tokenizer, info = merged_model(artifact)
    base_license = _base_license(info.base_model)
    with atomic_dir(folder) as tmp, quiet_loading():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        store.write_manifest(
            tmp,
            store.Manifest(name=name, source=f"merge:{artifact}", license=base_license, base=info.base_model),
        )
    return folder


def _base_license(base: str) -> str:
    if store.is_pulled(base):
        return store.read_manifest(base).license
    return "unknown"
