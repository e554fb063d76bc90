"""Merge a trained adapter into its base weights and register the result in the model store.

LoRA, QLoRA, AdaLoRA and IA3 fold into the linear weights (peft `merge_and_unload`), so the merged
model runs anywhere a plain model does (llama.cpp after `lmf export gguf`). Prompt-style methods
(prefix, prompt, P-tuning, adaption prompts) add tokens or gates rather than weight deltas; they
cannot be merged and are served as adapters instead. QLoRA merges into the dequantized 4-bit base
it was trained on, so the merged model computes what the trained adapter computed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.config import MERGEABLE
from lmfoundry.finetune.train.artifacts import ArtifactInfo, find_artifact, load_tuned
from lmfoundry.fsutil import atomic_dir
from lmfoundry.models import store
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
