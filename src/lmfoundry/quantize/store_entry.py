"""Create a quantized model in the store: `lmf quantize MODEL --method ...`.

Two kinds of entry come out, both ordinary store entries (`lmf models list/show/rm` work):

- torch methods (nf4, fp4, int8): the packed safetensors written by `save_quantized`
  (`model.safetensors` + `quantization.json` + config + tokenizer). `load_hf_model` rebuilds them
  with `load_quantized`, so `generate`, `chat`, the server and QLoRA fine-tuning take them.
- GGUF methods (gguf-q4_0, gguf-q4_k_m, gguf-q5_k_m, gguf-q8_0): `model-<type>.gguf` made by
  llama.cpp's quantizer from an fp32 GGUF the project writes, plus config.json and the tokenizer
  (for `show`, token counting and the report) but no safetensors. The manifest's `gguf` points at
  the file and `quantization.format == "gguf"`: such an entry runs on the llama_cpp backend.

The manifest's `quantization` dict always has `method`, `format` ("torch" or "gguf"),
`block_size`, `double_quant` and `bits_per_param` (quantized linear layers) plus
`bits_per_param_overall` (every weight byte over every parameter of the fp32 model). Torch entries
made with `embeddings=` (`--quantize-embeddings`) also record `embeddings` (the method of the input
embedding and output head), `embedding_bits_per_param` and `tied_head`; `calibration` is None, or
for `--gptq` entries what GPTQ calibrated on (source, sequences, tokens, damp, act_order, layers).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.fsutil import atomic_dir
from lmfoundry.models import store
from lmfoundry.models.convert import gguf_summary
from lmfoundry.models.gguf_writer import source_pre_tokenizer
from lmfoundry.models.load import load_hf_model, resolve
from lmfoundry.quantize.blockwise import check_block_size
from lmfoundry.quantize.gguf import GGUF_TYPES, quantize_gguf, write_f32_gguf
from lmfoundry.quantize.gptq import CalibrationSource
from lmfoundry.quantize.modules import WEIGHTS_FILE, quantize_model, save_quantized

TORCH_METHODS = ("nf4", "fp4", "int8")
GGUF_PREFIX = "gguf-"
METHODS = (*TORCH_METHODS, *(GGUF_PREFIX + kind for kind in GGUF_TYPES))
DEFAULT_BLOCK_SIZE = 64

Step = Callable[[str], None]


def check_method(method: str) -> str:
    if method not in METHODS:
        raise InvalidInputError(f"unknown quantization method {method!r} (choose from {', '.join(METHODS)})")
    return method


def default_quant_name(
    model: str, method: str, double_quant: bool = False, embeddings: str | None = None, gptq: bool = False
) -> str:
    """`smollm2-135m-instruct` + nf4 + double quant (+ int8 embeddings, GPTQ) -> `...-nf4-dq(-emb-int8)(-gptq)`."""
    suffix = method.removeprefix(GGUF_PREFIX) if method.startswith(GGUF_PREFIX) else method
    emb = f"-emb-{embeddings}" if embeddings else ""
    return (
        f"{store.default_name(model)}-{suffix}{'-dq' if double_quant else ''}{emb}{'-gptq' if gptq else ''}"
    )


def _check_options(
    method: str,
    double_quant: bool,
    block_size: int | None,
    embeddings: str | None = None,
    gptq: bool = False,
) -> int:
    check_method(method)
    if method.startswith(GGUF_PREFIX):
        if double_quant or block_size is not None or embeddings or gptq:
            raise InvalidInputError(
                f"--double-quant, --block-size, --quantize-embeddings and --gptq apply to nf4/fp4/int8; "
                f"{method} uses llama.cpp's own blocks and rounding (and already quantizes the embedding "
                "and output head)"
            )
        return 0
    if embeddings is not None and embeddings not in TORCH_METHODS:
        raise InvalidInputError(
            f"unknown embedding quantization method {embeddings!r} (choose from {', '.join(TORCH_METHODS)})"
        )

    return check_block_size(DEFAULT_BLOCK_SIZE if block_size is None else block_size)


def _check_target(model: str, name: str, force: bool) -> None:
    store.validate_name(name)
    if name == model:
        raise InvalidInputError(f"the quantized model needs a name other than its source {model!r} (--name)")
    if store.is_pulled(name) and not force:
        raise LmfError(f"model {name!r} already exists in the store (pass --force to replace it, or --name)")


def _source(model: str) -> tuple[Any, Any, store.Manifest | None]:
    """Load the fp32 source model; a quantized source is refused (quantize its base instead)."""

    resolved = resolve(model)
    if resolved.quantization:
        base = resolved.quantization.get("method")
        raise InvalidInputError(
            f"{model!r} is already quantized ({base}); quantize its fp32 base ({resolved.manifest.base if resolved.manifest else '?'}) instead"
        )
    hf_model, tokenizer = load_hf_model(model)
    return hf_model, tokenizer, resolved.manifest


def create_quantized(
    model: str,
    method: str,
    *,
    double_quant: bool = False,
    block_size: int | None = None,
    name: str | None = None,
    force: bool = False,
    threads: int | None = None,
    on_step: Step | None = None,
    embeddings: str | None = None,
    calibration: CalibrationSource | None = None,
) -> dict[str, Any]:
    """Quantize `model` (store name, packaged name or directory) into a new store entry.

    `embeddings` (nf4, fp4 or int8; torch methods only) also quantizes the input embedding and
    the output head. `calibration` (torch methods only) chooses the decoder blocks' codes with
    GPTQ on that text instead of rounding each weight to the nearest code. Returns the entry's
    name, folder, manifest `quantization` dict and weight file size.
    """
    gptq = calibration is not None
    block = _check_options(method, double_quant, block_size, embeddings, gptq)
    target = name or default_quant_name(model, method, double_quant, embeddings, gptq)
    _check_target(model, target, force)
    step = on_step or (lambda _msg: None)
    step(f"loading {model}")
    hf_model, tokenizer, source_manifest = _source(model)
    folder = store.entry_dir(target)
    manifest = store.Manifest(
        name=target,
        source=f"quantize:{model}",
        license=source_manifest.license if source_manifest else "unknown",
        base=model,
    )
    with atomic_dir(folder) as tmp:
        if method.startswith(GGUF_PREFIX):
            pre = _source_pre_tokenizer(source_manifest)
            weights, info = _write_gguf_entry(hf_model, tokenizer, tmp, target, method, pre, threads, step)
            manifest.gguf = str(folder / weights.name)
        else:
            weights, info = _write_torch_entry(
                hf_model, tokenizer, tmp, method, double_quant, block, step, embeddings, calibration
            )
        manifest.quantization = info
        store.write_manifest(tmp, manifest)
    return {
        "name": target,
        "path": str(folder),
        "base": model,
        "method": method,
        "weights": str(folder / weights.name),
        "size_bytes": (folder / weights.name).stat().st_size,
        "quantization": info,
    }


def _source_pre_tokenizer(manifest: store.Manifest | None) -> str | None:
    return source_pre_tokenizer(manifest.gguf) if manifest else None


def _count_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _write_torch_entry(
    model: Any,
    tokenizer: Any,
    tmp: Path,
    method: str,
    double_quant: bool,
    block_size: int,
    step: Step,
    embeddings: str | None = None,
    calibration: CalibrationSource | None = None,
) -> tuple[Path, dict[str, Any]]:
    total_params = _count_params(model)
    emb = f", embeddings to {embeddings}" if embeddings else ""
    step(f"quantizing linear layers to {method}{' + double quant' if double_quant else ''}{emb}")
    tokens = None if calibration is None else calibration.load(tokenizer)
    report = quantize_model(
        model,
        method,
        double_quant=double_quant,
        block_size=block_size,
        embeddings=embeddings,
        calibration=tokens,
        step=step,
    )
    step("writing packed safetensors")
    save_quantized(model, tmp, tokenizer=tokenizer, overwrite=True)
    weights = tmp / WEIGHTS_FILE
    info = {
        "method": method,
        "format": "torch",
        "block_size": block_size,
        "double_quant": double_quant,
        "bits_per_param": round(report.bits_per_param, 4),
        "bits_per_param_overall": round(8.0 * safetensors_data_bytes(weights) / total_params, 4),
        "parameters": total_params,
        "quantized_parameters": report.params,
        "quantized_layers": report.layers,
        "skipped": report.skipped,
        "embeddings": report.embeddings,
        "embedding_bits_per_param": round(report.embedding_bits_per_param, 4) if embeddings else None,
        "tied_head": report.tied_head if embeddings else None,
        "calibration": report.calibration,
    }
    return weights, info


def _write_gguf_entry(
    model: Any,
    tokenizer: Any,
    tmp: Path,
    label: str,
    method: str,
    pre: str | None,
    threads: int | None,
    step: Step,
) -> tuple[Path, dict[str, Any]]:
    kind = method.removeprefix(GGUF_PREFIX)
    total_params = _count_params(model)
    step("writing the fp32 GGUF")
    f32 = write_f32_gguf(model, tokenizer, tmp / "model-f32.gguf", name=label, pre=pre)
    model.config.save_pretrained(tmp)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    step(f"quantizing with llama.cpp to {kind}")
    out = quantize_gguf(f32, tmp / f"model-{kind}.gguf", kind, threads=threads)
    f32.unlink()
    summary = gguf_summary(out)
    info = {
        "method": method,
        "format": "gguf",
        "block_size": None,
        "double_quant": False,
        "bits_per_param": round(summary["bits_per_param"], 4),
        "bits_per_param_overall": round(8.0 * summary["tensor_bytes"] / total_params, 4),
        "parameters": total_params,
        "quantized_parameters": summary["linear_parameters"],
        "tensor_types": summary["tensor_types"],
    }
    return out, info


def safetensors_data_bytes(path: Path) -> int:
    """Bytes of tensor data in a safetensors file (its size minus the JSON header)."""
    with path.open("rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_len))
    return sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")
