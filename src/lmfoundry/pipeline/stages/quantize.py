"""Quantize a base model's linear layers (nf4 / fp4 / int8) into a new store entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.models import store
from lmfoundry.models.load import load_hf_model
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.stage_kind import StageKind
from lmfoundry.quantize.modules import quantize_model, save_quantized
from lmfoundry.track.runs import log_run


@dataclass
class Options:
    model: str = ""
    """Store name, packaged name or directory of the model to quantize."""
    name: str = ""
    """Store name of the quantized entry (loadable like any model afterwards)."""
    method: str = "nf4"
    block_size: int = 64
    double_quant: bool = False


def run(ctx: StageContext, options: Options) -> dict[str, Any]:
    if not options.model or not options.name:
        raise InvalidInputError("quantize stage needs 'model' and 'name' (the new store entry)")
    store.validate_name(options.name)
    ctx.progress.note(f"loading {options.model}")
    model, tokenizer = load_hf_model(options.model)
    report = quantize_model(model, options.method, options.double_quant, options.block_size)
    folder = save_quantized(model, store.entry_dir(options.name), tokenizer, overwrite=True)
    store.write_manifest(folder, store.Manifest(
        name=options.name, source=options.model, base=options.model,
        quantization={"method": options.method, "block_size": options.block_size,
                      "double_quant": options.double_quant},
    ))  # fmt: skip
    if ctx.tracking:
        log_run("quantize", {"model": options.model, "method": options.method, "block_size": options.block_size},
                {"layers": report.layers, "bytes": report.bytes, "fp32_bytes": report.fp32_bytes}, [],
                None, run_name=f"pipeline:{ctx.name}")  # fmt: skip
    return {"model": options.name, "path": str(folder), "layers": report.layers, "bytes": report.bytes}


def fresh(ctx: StageContext, outputs: dict[str, Any]) -> bool:
    return store.is_pulled(outputs["model"])


KIND = StageKind(Options, run, fresh, summary=(__doc__ or "").strip().splitlines()[0])
