"""Turn model sources into transformers checkpoints (fp32 safetensors) for the store.

GGUF files are dequantized once by transformers (`from_pretrained(dir, gguf_file=...)`, about 20 s
for a 135M model); the result is rebuilt with `from_config` + `load_state_dict` (transformers
refuses to `save_pretrained` a model it loaded from GGUF) and cached, so later loads take ~2 s.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError, ModelNotFoundError
from lmfoundry.quiet import quiet_loading, stderr_held

_GGUF_MAGIC = b"GGUF"


def check_gguf_file(path: Path) -> None:
    """Fail early, with the file named, on a missing or non-GGUF file."""
    if not path.is_file():
        raise ModelNotFoundError(f"GGUF file not found: {path}")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != _GGUF_MAGIC:
        raise LmfError(f"{path} is not a GGUF file (bad magic bytes {magic!r})")


def gguf_to_checkpoint(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF file into an fp32 transformers checkpoint written to `out_dir`."""
    check_gguf_file(gguf_path)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf_path.parent), gguf_path.name
    try:
        with quiet_loading(), stderr_held():  # transformers' conversion bar has no switch
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
            loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype="float32")
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise LmfError(f"cannot read GGUF {gguf_path}: {exc}") from exc
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    clean = AutoModelForCausalLM.from_config(config, dtype="float32")
    missing, unexpected = clean.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise LmfError(f"GGUF {gguf_path}: weights do not match the architecture ({missing}, {unexpected})")
    with quiet_loading():
        clean.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def copy_transformers_model(source: str, out_dir: Path) -> None:
    """Load a hub id or local directory with transformers and save it into `out_dir` as fp32."""
    local = Path(source).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise LmfError(f"{local} is not a transformers model directory (no config.json)")
    if not local.exists() and "/" not in source:
        raise ModelNotFoundError(
            f"unknown model {source!r}: not a store name, packaged model, file or directory "
            "(packaged: smollm2-135m-instruct, gemma3-270m; see `lmf models list`)"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local) if local.exists() else source)
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(
                str(local) if local.exists() else source, dtype="float32"
            )
    except OSError as exc:
        raise hub_error(source, exc) from exc
    with quiet_loading():
        model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    readme = local / "README.md"
    if readme.is_file():
        (out_dir / "README.md").write_bytes(readme.read_bytes())


def hub_error(source: str, exc: Exception) -> LmfError:
    """A one-line explanation of a failed hub load, naming the offline setting when it is on."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        return ModelNotFoundError(
            f"cannot load {source!r} from the Hugging Face hub: HF_HUB_OFFLINE=1 is set and it is not in "
            "the local cache (unset HF_HUB_OFFLINE with network access, or pull a local directory or GGUF file)"
        )
    return ModelNotFoundError(f"cannot load {source!r} from the Hugging Face hub: {exc}".splitlines()[0])


def _is_linear_weight(name: str, shape: tuple[int, ...]) -> bool:
    """Weights of the transformer blocks' matmuls (what QuantLinear replaces), not embeddings."""
    return name.startswith("blk.") and name.endswith(".weight") and len(shape) == 2


def gguf_summary(path: Path) -> dict[str, Any]:
    """Parameter count, bytes and bits/param (all tensors, and block linears only), tensor types."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    params = nbytes = lin_params = lin_bytes = 0
    types: Counter[str] = Counter()
    for tensor in reader.tensors:
        shape = tuple(int(d) for d in tensor.shape)
        params += int(tensor.n_elements)
        nbytes += int(tensor.n_bytes)
        types[tensor.tensor_type.name] += 1
        if _is_linear_weight(tensor.name, shape):
            lin_params += int(tensor.n_elements)
            lin_bytes += int(tensor.n_bytes)
    file_type = reader.fields.get("general.file_type")
    return {
        "parameters": params,
        "tensor_bytes": nbytes,
        "bits_per_param_overall": 8.0 * nbytes / params if params else 0.0,
        "linear_parameters": lin_params,
        "bits_per_param": 8.0 * lin_bytes / lin_params if lin_params else 0.0,
        "tensor_types": dict(sorted(types.items())),
        "file_type": int(file_type.contents()) if file_type is not None else None,
    }
