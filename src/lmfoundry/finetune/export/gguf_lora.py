"""Write a peft LoRA adapter as a llama.cpp GGUF adapter (`general.type = adapter`).

llama.cpp applies an adapter at load time (`llama-cli --lora`, `Llama(lora_path=...)`) on top of
the base GGUF, so one base file serves many adapters. Each LoRA pair becomes two tensors named
after the base weight, `<gguf name>.lora_a` (r x in) and `<gguf name>.lora_b` (out x r), and
llama.cpp scales B @ A by `adapter.lora.alpha / r`: we write alpha = peft's scaling x r, which
covers rsLoRA too. Llama's q/k rows are permuted for llama.cpp's rotary layout exactly as the
base export does (`gguf_writer.permute_rotary`); permuting the rows of B permutes B @ A alike.
Features llama.cpp adapters cannot express (DoRA, extra trained modules, LoRA biases) are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.train.artifacts import find_artifact, load_tuned
from lmfoundry.models.gguf_writer import (
    ArchSpec,
    arch_of,
    check_outtype,
    permute_rotary,
    tensor_names,
    write_gguf_file,
)


def _lora_modules(model: Any) -> list[tuple[str, Any]]:
    """(base-model parameter name of the adapted weight, LoRA layer) for every LoRA layer."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    return [
        (f"{name}.weight", module) for name, module in base.named_modules() if isinstance(module, LoraLayer)
    ]


def _refuse_unsupported(model: Any, adapter: str) -> None:
    config = model.peft_config[adapter]
    if getattr(config, "peft_type", None) is None or str(config.peft_type).split(".")[-1] != "LORA":
        raise LmfError(f"GGUF adapters hold LoRA only; this adapter is {config.peft_type}")
    if getattr(config, "use_dora", False):
        raise LmfError("DoRA adapters cannot be written as llama.cpp LoRA adapters")
    if getattr(config, "modules_to_save", None):
        raise LmfError(
            f"the adapter also trains {config.modules_to_save}; llama.cpp adapters hold LoRA pairs only"
        )
    if getattr(config, "bias", "none") != "none":
        raise LmfError("LoRA adapters with trained biases cannot be written as llama.cpp adapters")


def lora_tensors(model: Any, arch: ArchSpec, outtype: str) -> tuple[list[tuple[str, Any]], float]:
    """((GGUF tensor name, array) for every lora_a / lora_b, the alpha to record)."""
    import numpy as np

    adapter = model.active_adapter
    _refuse_unsupported(model, adapter)
    config = model.get_base_model().config
    names = tensor_names(arch, config.num_hidden_layers)
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    dtype = np.float32 if outtype == "f32" else np.float16
    out: list[tuple[str, Any]] = []
    alphas: set[float] = set()
    for weight_name, layer in _lora_modules(model):
        a = layer.lora_A[adapter].weight.detach().float().numpy()
        b = layer.lora_B[adapter].weight.detach().float().numpy()
        alphas.add(round(float(layer.scaling[adapter]) * a.shape[0], 6))
        if arch.permute_qk and weight_name.endswith("self_attn.q_proj.weight"):
            b = permute_rotary(b, n_head)
        elif arch.permute_qk and weight_name.endswith("self_attn.k_proj.weight"):
            b = permute_rotary(b, n_kv)
        gguf_name = names.get_name(weight_name, try_suffixes=(".weight",))
        if gguf_name is None:
            raise LmfError(f"no GGUF name for the adapted weight {weight_name!r}")
        out.append((f"{gguf_name}.lora_a", np.ascontiguousarray(a.astype(dtype))))
        out.append((f"{gguf_name}.lora_b", np.ascontiguousarray(b.astype(dtype))))
    if not out:
        raise LmfError("the adapter has no LoRA layers to export")
    if len(alphas) != 1:
        raise LmfError(f"llama.cpp adapters have one alpha/r scale; this adapter mixes {sorted(alphas)}")
    return out, alphas.pop()


def write_lora_gguf(model: Any, out: Path, *, outtype: str = "f32", name: str = "adapter") -> Path:
    """Write the active LoRA adapter of peft `model` to `out` atomically."""
    import gguf

    check_outtype(outtype)
    arch = arch_of(model.get_base_model().config)
    tensors, alpha = lora_tensors(model, arch, outtype)

    def fill(writer: Any) -> None:
        writer.add_name(name)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for tensor_name, data in tensors:
            writer.add_tensor(tensor_name, data)

    return write_gguf_file(out, arch, fill)


def export_lora(run: str | Path, *, outtype: str = "f32", out: str | Path | None = None) -> dict[str, Any]:
    """Export a LoRA fine-tuning run's adapter to `out` (default ./<run>-lora-<outtype>.gguf)."""
    folder = find_artifact(run)
    model, _, info = load_tuned(folder)
    if info.method not in ("lora", "adalora") or info.stage == "reward":
        raise LmfError(f"{run} is a {info.method} {info.stage} run; GGUF adapters hold causal-LM LoRA only")
    label = Path(run).resolve().name
    target = Path(out) if out is not None else Path(f"{label}-lora-{outtype}.gguf")
    path = write_lora_gguf(model, target, outtype=outtype, name=label)
    return {
        "path": str(path),
        "outtype": outtype,
        "source": str(run),
        "base": info.base_model,
        "bytes": path.stat().st_size,
    }
