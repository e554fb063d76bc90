"""`lmf export onnx`: a store model, model directory or fine-tuning run (merged first) as ONNX.

The graph is written by onnxruntime-genai's model builder (`onnxruntime_genai.models.builder`),
the exporter ONNX Runtime maintains for decoder LMs: one `model.onnx` (+ `model.onnx.data`) whose
inputs are `input_ids`, `attention_mask` and `past_key_values.N.key/value` and whose outputs are
`logits` and `present.N.key/value`, a `genai_config.json` for onnxruntime-genai's generator, and
the tokenizer files. Weights are fp32, or blockwise int8 (MatMulNBits) with `quantize="int8"`.
The folder is built in a temp directory beside the target and renamed into place, then checked
against the fp32 transformers model (`onnx_parity.py`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.export.merge import load_source, run_artifact
from lmfoundry.finetune.export.onnx_parity import ParityReport, check_onnx, tolerances
from lmfoundry.fsutil import atomic_dir, atomic_write_text, read_json
from lmfoundry.models import store
from lmfoundry.models.load import resolve
from lmfoundry.plugins import require
from lmfoundry.quiet import quiet_loading, stderr_held

ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM")
"""What the export is tested on: Llama-family decoders (SmolLM2, Llama, Qwen2)."""
QUANTIZE = ("int8",)
"""Blockwise int8 weights (MatMulNBits, blocks of 32); the builder's int4 is round-to-nearest and
measured poorly on SmolLM2 (docs/deploy.md), so it is not offered."""
RECORD = "lmf_onnx.json"
"""Written into the folder: what was exported, so `lmf export onnx-check` can find the reference."""


def default_target(model_or_run: str, precision: str, *, is_run: bool) -> Path:
    """A store model's `onnx-<precision>/` in its store folder; anything else `./<name>-onnx-<precision>`."""
    if not is_run and store.is_pulled(model_or_run):
        return store.entry_dir(model_or_run) / f"onnx-{precision}"
    label = Path(model_or_run).resolve().name if is_run else store.default_name(model_or_run)
    return Path(f"{label}-onnx-{precision}")


def export_onnx(
    model_or_run: str,
    *,
    quantize: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    check: bool = True,
    threshold: float | None = None,
    max_diff: float | None = None,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Export to an ONNX folder with a KV cache; with `check`, its parity report under "parity"."""
    step = on_step or (lambda _message: None)
    precision = _precision(quantize)
    tolerances(precision, threshold, max_diff)  # a bad value fails before the export, not after
    require("onnxruntime_genai", extra="onnx", package="onnxruntime-genai")
    is_run = run_artifact(model_or_run) is not None
    target = Path(out) if out is not None else default_target(model_or_run, precision, is_run=is_run)
    _check_target(target, force)
    if not is_run:
        _check_unquantized(model_or_run)
    step(f"loading {model_or_run}" + (" and merging its adapter" if is_run else ""))
    source = load_source(model_or_run)
    _check_architecture(source.model, model_or_run)
    with atomic_dir(target) as tmp:
        build(source.model, source.tokenizer, tmp, precision, step)
        record = {"source": _absolute(model_or_run), "precision": precision, "exporter": exporter()}
        atomic_write_text(tmp / RECORD, json.dumps(record, indent=2))
    result = {"path": str(target), **record, "bytes": _folder_bytes(target), **graph_io(target)}
    if check:
        report = check_onnx(
            target,
            source.model,
            source.tokenizer,
            precision=precision,
            threshold=threshold,
            max_diff=max_diff,
            on_step=step,
        )
        result["parity"] = report.to_dict()
    return result


def build(model: Any, tokenizer: Any, folder: Path, precision: str, step: Callable[[str], None]) -> None:
    """Run the model builder on `model` (saved to a temp checkpoint) into `folder`, CPU target."""
    builder = _import_builder()
    with tempfile.TemporaryDirectory(prefix=".lmf-onnx-", dir=folder.parent) as tmp:  # beside the output
        checkpoint, cache = str(Path(tmp) / "checkpoint"), str(Path(tmp) / "cache")
        step("saving the fp32 checkpoint for the exporter")
        with quiet_loading():
            model.save_pretrained(checkpoint)
            tokenizer.save_pretrained(checkpoint)
        step(f"exporting to ONNX ({precision}) with {exporter()}")
        with _builder_output_held():
            options = builder.parse_extra_options(
                None, checkpoint, str(folder), precision, "cpu", cache, ["hf_token=false"]
            )
            builder.create_model(None, checkpoint, str(folder), precision, "cpu", cache, **options)


def check_export(folder: str | Path, *, reference: str | None = None, **settings: Any) -> ParityReport:
    """The parity report of an existing export against its source (or `reference`), reloaded."""
    folder = Path(folder)
    record = read_json(folder / RECORD, f"{folder} is not an `lmf export onnx` folder (no {RECORD})")
    source = load_source(reference or record["source"])
    return check_onnx(folder, source.model, source.tokenizer, precision=record["precision"], **settings)


def graph_io(folder: Path) -> dict[str, Any]:
    """The graph's inputs and outputs, the KV-cache ones counted (weights are not loaded)."""
    onnx = require("onnx", extra="onnx")
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    inputs, outputs = [i.name for i in graph.input], [o.name for o in graph.output]
    return {
        "inputs": [name for name in inputs if not name.startswith("past_key_values.")],
        "outputs": [name for name in outputs if not name.startswith("present.")],
        "kv_cache_inputs": sum(name.startswith("past_key_values.") for name in inputs),
        "kv_cache_outputs": sum(name.startswith("present.") for name in outputs),
    }


def exporter() -> str:
    return f"onnxruntime-genai {version('onnxruntime-genai')} model builder"


def _precision(quantize: str | None) -> str:
    if quantize is not None and quantize not in QUANTIZE:
        raise LmfError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    return quantize or "fp32"


def _check_target(target: Path, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise LmfError(f"{target} exists and is not a folder; choose another --out")
    if target.exists() and not force:
        raise LmfError(f"{target} already exists (pass --force to replace it)")


def _check_unquantized(name: str) -> None:
    quantization = resolve(name).quantization
    if quantization:
        raise LmfError(
            f"{name} holds {quantization.get('method', 'quantized')} weights; export the fp32 model it was "
            "made from (with --quantize int8 for 8-bit weights)"
        )


def _check_architecture(model: Any, name: str) -> None:
    architecture = type(model).__name__
    if architecture not in ARCHITECTURES:
        raise LmfError(
            f"{name} is a {architecture}; `lmf export onnx` supports Llama-family decoders "
            f"({', '.join(ARCHITECTURES)})"
        )


def _import_builder() -> Any:
    """The builder module. Importing it imports onnxruntime's MatMulNBits quantizer, which calls
    `logging.basicConfig(level=INFO)` on the root logger; the root logger is put back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return require("onnxruntime_genai.models.builder", extra="onnx", package="onnxruntime-genai")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@contextlib.contextmanager
def _builder_output_held() -> Iterator[None]:
    """The builder prints its steps and tqdm bars; held (stdout stays clean for --json), shown on failure."""
    with stderr_held(), contextlib.redirect_stdout(sys.stderr):
        yield


def _absolute(model_or_run: str) -> str:
    path = Path(model_or_run).expanduser()
    return str(path.resolve()) if path.exists() else model_or_run


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
