"""`lmf export gguf`: a store model, model directory or fine-tuning run (merged first) as a GGUF file.

The file itself is written by `lmfoundry.models.gguf_writer`, the writer quantization uses too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmfoundry.finetune.export.merge import load_source
from lmfoundry.models import store
from lmfoundry.models.gguf_writer import store_pre_tokenizer, write_gguf


def export(model_or_run: str, *, outtype: str = "f16", out: str | Path | None = None) -> dict[str, Any]:
    """Export a store model, model directory, or fine-tuning run (merged first) to GGUF.

    Without `out`, a store entry gets `model-<outtype>.gguf` in its folder (and, if it has no GGUF yet,
    its manifest points at it, so `lmfoundry.load(name)` can use llama.cpp); anything else `./<name>-<outtype>.gguf`.
    """
    source = load_source(model_or_run)
    model, tokenizer, label = source.model, source.tokenizer, source.label
    in_store = not source.is_run and store.is_pulled(model_or_run)
    if out is not None:
        target = Path(out)
    elif in_store:
        target = store.entry_dir(model_or_run) / f"model-{outtype}.gguf"
    else:
        target = Path(f"{label}-{outtype}.gguf")
    path = write_gguf(
        model, tokenizer, target, outtype=outtype, name=label, pre=store_pre_tokenizer(source.base)
    )
    manifest = store.read_manifest(model_or_run) if in_store else None
    if manifest is not None and out is None and not manifest.gguf:
        manifest.gguf = str(path)  # the llama.cpp backend can now serve this entry
        store.write_manifest(store.entry_dir(model_or_run), manifest)
    return {"path": str(path), "outtype": outtype, "source": model_or_run, "bytes": path.stat().st_size}
