"""The one GGUF writer: a transformers Llama-family model (f32 or f16) with the `gguf` library, and
the atomic file finish that the LoRA-adapter export shares (`write_gguf_file`).

It lives in the models layer because the store itself needs it: `models/fast_gguf.py` writes the
float16 GGUF that `auto` runs store models on; quantization, export and the parity check above
use the same writer.

What goes in: the architecture's hyperparameters, every weight under its GGUF name (from
`gguf.tensor_mapping`), the BPE tokenizer (tokens, token types, merges, special ids) and the chat
template. Two details decide whether llama.cpp computes the same function as transformers:

- Llama checkpoints in HF layout order the rotary dimensions of q/k as two halves; llama.cpp's
  `llama` architecture (rope "normal" mode) expects them interleaved pairwise, so q_proj/k_proj rows
  are permuted per head (`permute_rotary`). Qwen2 uses NEOX rope in llama.cpp: no permutation.
- Tied output embeddings are written once (`token_embd`); llama.cpp reuses them as the output.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.models import store

if TYPE_CHECKING:
    import numpy as np

OUTTYPES = ("f32", "f16")


@dataclass(frozen=True)
class ArchSpec:
    gguf_arch: str
    """Name in gguf.MODEL_ARCH_NAMES (and key prefix in the file)."""
    permute_qk: bool
    default_pre: str
    """llama.cpp pre-tokenizer name when the source GGUF does not tell us one."""


ARCHS = {
    "LlamaForCausalLM": ArchSpec("llama", True, "smollm"),
    "Qwen2ForCausalLM": ArchSpec("qwen2", False, "qwen2"),
}


def permute_rotary(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder each head's rows from [first half | second half] to interleaved pairs."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def arch_of(config: Any) -> ArchSpec:
    name = (getattr(config, "architectures", None) or [type(config).__name__])[0]
    if name not in ARCHS:
        raise LmfError(f"GGUF export supports {', '.join(ARCHS)}; this model is {name}")
    return ARCHS[name]


def _rope_theta(config: Any) -> float:
    params: Any = getattr(config, "rope_parameters", None)
    params = params if isinstance(params, dict) else {}
    scaling = params.get("rope_type", "default")
    if scaling not in ("default", None):
        raise LmfError(f"GGUF export does not handle rope scaling {scaling!r} yet")
    theta: Any = params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0
    return float(theta)


def _write_hparams(writer: Any, config: Any, prefix_name: str) -> None:
    n_head = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    writer.add_name(prefix_name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or n_head)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)


def _merges(model_json: dict[str, Any]) -> list[str]:
    merges = model_json.get("merges") or []
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def _write_tokenizer(writer: Any, tokenizer: Any, vocab_size: int, pre: str) -> None:
    """BPE vocabulary in id order, padded to the embedding rows, with types and special ids."""
    import gguf

    data = json.loads(tokenizer.backend_tokenizer.to_str())
    if data["model"]["type"] != "BPE":
        raise LmfError(f"GGUF export handles BPE tokenizers; this one is {data['model']['type']}")
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    if max(by_id) >= vocab_size:
        raise LmfError(f"tokenizer has ids up to {max(by_id)} but the model has {vocab_size} embedding rows")
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        if i in added:
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(_merges(data["model"]))
    for attr, add in (
        ("bos_token_id", writer.add_bos_token_id),
        ("eos_token_id", writer.add_eos_token_id),
        ("unk_token_id", writer.add_unk_token_id),
        ("pad_token_id", writer.add_pad_token_id),
    ):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            add(int(value))
    writer.add_add_bos_token(bool(tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]))
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def _tensors(model: Any, arch: ArchSpec, outtype: str) -> list[tuple[str, Any]]:
    """(GGUF name, numpy array) for every weight, in state-dict order."""
    import numpy as np

    config = model.config
    names = tensor_names(arch, config.num_hidden_layers)
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    tied = bool(getattr(config, "tie_word_embeddings", False))
    out = []
    for name, tensor in model.state_dict().items():
        if (tied and name == "lm_head.weight") or "rotary_emb" in name:
            continue
        data = tensor.detach().float().cpu().numpy()
        if arch.permute_qk and name.endswith("self_attn.q_proj.weight"):
            data = permute_rotary(data, n_head)
        elif arch.permute_qk and name.endswith("self_attn.k_proj.weight"):
            data = permute_rotary(data, n_kv)
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise LmfError(f"no GGUF name for tensor {name!r} (architecture {arch.gguf_arch})")
        keep_f32 = outtype == "f32" or data.ndim == 1
        out.append((new, np.ascontiguousarray(data.astype(np.float32 if keep_f32 else np.float16))))
    return out


def write_gguf_file(out: Path, arch: ArchSpec, fill: Callable[[Any], None]) -> Path:
    """Create a GGUF file at `out` atomically: `fill(writer)` adds keys and tensors, then the
    header, key/values and tensors are written to a temp file that is renamed into place."""
    import gguf

    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    # a unique temp name: two processes writing the same file must not share (and truncate) one
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(tmp_name)
    writer = gguf.GGUFWriter(str(tmp), arch.gguf_arch)
    try:
        fill(writer)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a model file is readable like the rest
        tmp.replace(out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return out


def check_outtype(outtype: str) -> str:
    if outtype not in OUTTYPES:
        raise InvalidInputError(f"--outtype must be one of {', '.join(OUTTYPES)}, got {outtype!r}")
    return outtype


def tensor_names(arch: ArchSpec, n_layers: int) -> Any:
    """gguf's map from transformers parameter names to GGUF tensor names for this architecture."""
    import gguf

    arch_enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch.gguf_arch)
    return gguf.get_tensor_name_map(arch_enum, n_layers)


def write_gguf(
    model: Any,
    tokenizer: Any,
    out: Path,
    *,
    outtype: str = "f16",
    name: str = "model",
    pre: str | None = None,
) -> Path:
    """Write `model` + `tokenizer` to `out` (atomically: a temp file renamed into place)."""
    import gguf

    check_outtype(outtype)
    arch = arch_of(model.config)

    def fill(writer: Any) -> None:
        _write_hparams(writer, model.config, name)
        file_type = gguf.LlamaFileType.ALL_F32 if outtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
        writer.add_file_type(int(file_type))
        _write_tokenizer(writer, tokenizer, model.config.vocab_size, pre or arch.default_pre)
        for tensor_name, data in _tensors(model, arch, outtype):
            writer.add_tensor(tensor_name, data)

    return write_gguf_file(out, arch, fill)


def source_pre_tokenizer(gguf_path: str | None) -> str | None:
    """The `tokenizer.ggml.pre` of the GGUF a model came from (keeps llama.cpp's regex right)."""
    if not gguf_path or not Path(gguf_path).is_file():
        return None
    import gguf

    field = gguf.GGUFReader(gguf_path).fields.get("tokenizer.ggml.pre")
    return str(field.contents()) if field is not None else None


def store_pre_tokenizer(name: str | None, depth: int = 0) -> str | None:
    """The pre-tokenizer of the GGUF a store entry (or the entry it derives from) came from."""
    if not name or depth > 4 or not store.is_pulled(name):
        return None
    manifest = store.read_manifest(name)
    return source_pre_tokenizer(manifest.gguf) or store_pre_tokenizer(manifest.base, depth + 1)
