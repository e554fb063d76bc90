"""Quantize a torch causal LM in place (nf4, fp4, int8), save it, load it back without fp32 weights.

`quantize_model` swaps every `nn.Linear` (except skipped names and linears tied to an embedding)
for a `QuantLinear` and reports what that saved, measured from the actual buffer bytes.
`save_quantized` writes `model.safetensors` (codes, constants and the unquantized rest),
`quantization.json` and the model config; `load_quantized` builds the skeleton with parameters on
the `meta` device, swaps in empty QuantLinears and assigns the saved tensors, so peak memory stays
near the quantized size. The tensor-level formats live in `quant_blockwise.py`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.fsutil import atomic_dir, atomic_write_text
from lmfoundry.models.quant_blockwise import (
    DQ_BLOCK,
    METHODS,
    affine_dequantize,
    affine_quantize,
    check_block_size,
    check_method,
    quant_overhead_bytes,
)
from lmfoundry.models.quant_linear import quant_linear_class

if TYPE_CHECKING:
    import torch

__all__ = [
    "METHODS",
    "QuantReport",
    "affine_dequantize",
    "affine_quantize",
    "dequantize_model",
    "load_quantized",
    "quant_overhead_bytes",
    "quantize_model",
    "register_lora_layers",
    "save_quantized",
]

QUANT_FILE = "quantization.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


@dataclass
class QuantReport:
    """What `quantize_model` did; bytes and bits/param cover the quantized layers only (bias excluded)."""

    method: str
    block_size: int
    double_quant: bool
    layers: int = 0
    params: int = 0
    bytes: int = 0
    fp32_bytes: int = 0
    quantized: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def bits_per_param(self) -> float:
        return 8.0 * self.bytes / self.params if self.params else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bits_per_param": round(self.bits_per_param, 4)}


def _matches(name: str, patterns: Iterable[str]) -> bool:
    """A pattern matches whole dotted components of the name: "lm_head", "mlp", "layers.0.self_attn"."""
    return any(f".{p}." in f".{name}." for p in patterns)


def _tied_to_embedding(model: torch.nn.Module) -> set[int]:
    import torch

    return {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}


def _set_submodule(model: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def quantize_model(
    model: torch.nn.Module,
    method: str = "nf4",
    double_quant: bool = False,
    block_size: int = 64,
    skip: Iterable[str] = ("lm_head",),
) -> QuantReport:
    """Replace each eligible `nn.Linear` with a `QuantLinear`, in place, one layer at a time.

    Linears whose weight is shared with an embedding (tied `lm_head`) are skipped: quantizing them
    would keep the fp32 embedding anyway and break the tie.
    """
    import torch

    check_method(method)
    check_block_size(block_size)
    skip = tuple(skip)
    quant_linear = quant_linear_class()
    tied = _tied_to_embedding(model)
    report = QuantReport(method, block_size, double_quant)
    # names only: holding the modules would keep every fp32 weight alive until the loop ends
    targets = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
    for name in targets:
        linear: Any = model.get_submodule(name)
        if _matches(name, skip) or id(linear.weight) in tied:
            report.skipped.append(name)
            continue
        layer = quant_linear.from_linear(linear, method, block_size, double_quant)
        _set_submodule(model, name, layer)
        report.layers += 1
        report.params += linear.in_features * linear.out_features
        report.bytes += layer.quant_bytes()
        report.quantized.append(name)
        del linear
    report.fp32_bytes = report.params * 4
    return report


def dequantize_model(model: torch.nn.Module) -> int:
    """Swap every QuantLinear back to an fp32 `nn.Linear`; returns how many were swapped."""
    quant_linear = quant_linear_class()
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, quant_linear)]
    for name, layer in targets:
        _set_submodule(model, name, layer.to_linear())
    return len(targets)


def _quantized_layers(model: torch.nn.Module) -> dict[str, Any]:
    quant_linear = quant_linear_class()
    return {n: m for n, m in model.named_modules() if isinstance(m, quant_linear)}


def save_quantized(
    model: torch.nn.Module, directory: str | Path, tokenizer: Any = None, overwrite: bool = False
) -> Path:
    """Write the quantized model atomically: safetensors + quantization.json + config (+ tokenizer)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise InvalidInputError(f"{directory} already exists and is not empty (pass overwrite=True)")
    layers = _quantized_layers(model)
    if not layers:
        raise InvalidInputError("the model has no quantized layers: run quantize_model first")
    first = next(iter(layers.values()))
    meta = {
        "format_version": FORMAT_VERSION,
        "method": first.method,
        "block_size": first.block_size,
        "double_quant": first.double_quant,
        "dq_block": DQ_BLOCK,
        "layers": {n: _layer_spec(m) for n, m in layers.items()},
        "skipped": [n for n, m in model.named_modules() if _is_plain_linear(m)],
    }
    with atomic_dir(directory) as tmp:
        save_file(_unique_state(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        atomic_write_text(tmp / QUANT_FILE, json.dumps(meta, indent=2) + "\n")
        for part in (getattr(model, "config", None), getattr(model, "generation_config", None)):
            if part is not None:
                part.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return directory


def _unique_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with shared tensors kept once, under their first name.

    A tied `lm_head` comes after the embedding, so the embedding is saved and `tie_weights`
    restores the head on load.
    """
    state: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key not in seen:
            seen.add(key)
            state[name] = tensor.contiguous()
    return state


def _is_plain_linear(module: Any) -> bool:
    import torch

    return type(module) is torch.nn.Linear


def _layer_spec(layer: Any) -> dict[str, Any]:
    return {
        "in_features": layer.in_features,
        "out_features": layer.out_features,
        "bias": layer.bias is not None,
        "method": layer.method,
        "block_size": layer.block_size,
        "double_quant": layer.double_quant,
    }


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Create every parameter on the `meta` device (no memory); buffers stay real.

    Buffers such as rotary `inv_freq` are computed in `__init__` and not saved, so they must be
    materialised; parameters are all overwritten from the checkpoint. Same idea as accelerate's
    `init_empty_weights`, which is not a dependency of the models extra.
    """
    import torch

    original = torch.nn.Module.register_parameter

    def register(module: torch.nn.Module, name: str, param: Any) -> None:
        original(module, name, param)
        if param is not None:
            kwargs = {"requires_grad": param.requires_grad}
            module._parameters[name] = type(param)(param.to("meta"), **kwargs)

    torch.nn.Module.register_parameter = register  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original  # type: ignore[method-assign,assignment]


def read_quant_config(directory: str | Path) -> dict[str, Any]:
    """The parsed quantization.json of a saved quantized model (clear error when absent or wrong)."""
    path = Path(directory) / QUANT_FILE
    if not path.is_file():
        raise LmfError(f"{directory} is not a quantized model directory (no {QUANT_FILE})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LmfError(f"{path} is not valid JSON: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise LmfError(f"{path}: unsupported format_version {meta.get('format_version')!r}")
    return meta


def load_quantized(directory: str | Path) -> torch.nn.Module:
    """Rebuild a model written by `save_quantized`; fp32 weights of quantized layers never exist."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    directory = Path(directory)
    meta = read_quant_config(directory)
    config = AutoConfig.from_pretrained(directory)
    with _parameters_on_meta():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    quant_linear = quant_linear_class()
    for name, spec in meta["layers"].items():
        spec = dict(spec)
        bias = spec.pop("bias")
        args = (spec.pop("in_features"), spec.pop("out_features"), bias)
        _set_submodule(model, name, quant_linear(*args, **spec, device="meta"))
    state = load_file(str(directory / WEIGHTS_FILE))
    model.load_state_dict(state, strict=False, assign=True)
    del state
    model.tie_weights()
    _check_materialised(model, directory)
    if (directory / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(directory)
    return model.eval()


def _check_materialised(model: torch.nn.Module, directory: Path) -> None:
    missing = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    if missing:
        raise LmfError(f"{directory / WEIGHTS_FILE} lacks tensors: {', '.join(missing[:5])}")


def register_lora_layers(lora_config: Any) -> Any:
    """Let peft put LoRA adapters on QuantLinear layers (QLoRA): frozen quantized base + fp32 A/B.

    peft's own `lora.Linear` works as the wrapper: it reads `in_features`/`out_features` from the
    base layer and adds the adapter output to `base_layer(x)`. Merging needs an fp weight, so
    dequantize the model (`dequantize_model`) before `merge_and_unload`.
    """
    from peft.tuners.lora.layer import Linear as LoraLinear

    lora_config._register_custom_module({quant_linear_class(): LoraLinear})
    return lora_config
