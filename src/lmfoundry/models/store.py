"""The local model store under $LMF_HOME/models: list, pull, show, rm.

Each entry is a folder holding a transformers checkpoint (config.json, model.safetensors,
tokenizer files) and `lmf_model.json`, the manifest. A pull writes into a hidden temp folder that
is renamed into place only when complete, so a half-finished pull never looks finished.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry import paths
from lmfoundry.errors import InvalidInputError, LmfError, ModelNotFoundError
from lmfoundry.fsutil import atomic_dir, atomic_write_text
from lmfoundry.models import convert
from lmfoundry.models.catalog import CATALOG, packaged_gguf

MANIFEST = "lmf_model.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class Manifest:
    """What the store knows about an entry beyond the checkpoint itself."""

    name: str
    source: str
    """Where it came from: `package:<pip name>`, a GGUF path, a directory or a hub id."""
    license: str = "unknown"
    gguf: str | None = None
    """A GGUF file with the same weights, usable by the llama.cpp backend."""
    created_at: float = field(default_factory=time.time)
    quantization: dict[str, Any] | None = None
    base: str | None = None
    """For derived entries (quantized, merged): the store name they came from."""


def validate_name(name: str) -> str:
    """Store names become folder names: refuse anything that could escape the store."""
    if not _NAME_RE.match(name) or ".." in name:
        raise InvalidInputError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (max 128 chars)"
        )
    return name


def entry_dir(name: str) -> Path:
    return paths.models_dir() / validate_name(name)


def is_pulled(name: str) -> bool:
    return _NAME_RE.match(name) is not None and (paths.models_dir() / name / MANIFEST).is_file()


def read_manifest(name: str) -> Manifest:
    path = entry_dir(name) / MANIFEST
    if not path.is_file():
        raise ModelNotFoundError(f"model {name!r} is not in the store (see `lmf models list`)")
    data = json.loads(path.read_text(encoding="utf-8"))
    known = {k: v for k, v in data.items() if k in Manifest.__dataclass_fields__}
    return Manifest(**known)


def write_manifest(folder: Path, manifest: Manifest) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(asdict(manifest), indent=2))


def list_models() -> list[dict[str, Any]]:
    """Pulled entries and catalog entries (pulled or not), for `lmf models list`."""
    rows: list[dict[str, Any]] = []
    root = paths.models_dir()
    pulled = sorted(p.name for p in root.iterdir() if (p / MANIFEST).is_file()) if root.is_dir() else []
    for name in pulled:
        manifest = read_manifest(name)
        rows.append(
            {
                "name": name,
                "status": "pulled",
                "size_bytes": dir_size(root / name),
                "source": manifest.source,
                "quantization": (manifest.quantization or {}).get("method"),
            }
        )
    for name, entry in CATALOG.items():
        if name not in pulled:
            rows.append(
                {
                    "name": name,
                    "status": "available",
                    "size_bytes": None,
                    "source": f"package:{entry.package}",
                }
            )
    return rows


def dir_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def remove(name: str) -> Path:
    folder = entry_dir(name)
    if not (folder / MANIFEST).is_file():
        raise ModelNotFoundError(f"model {name!r} is not in the store (see `lmf models list`)")
    shutil.rmtree(folder)
    return folder


def pull(source: str, name: str | None = None, *, force: bool = False) -> Path:
    """Bring a model into the store and return its folder.

    `source` is a catalog name, a `.gguf` file, a local transformers directory or a hub id.
    Already-pulled entries are returned at once unless `force`.
    """

    target_name = validate_name(name or default_name(source))
    folder = entry_dir(target_name)
    if (folder / MANIFEST).is_file() and not force:
        return folder
    manifest = Manifest(name=target_name, source=source)
    with atomic_dir(folder) as tmp:
        if source in CATALOG:
            entry = CATALOG[source]

            gguf_path = packaged_gguf(entry, paths.lmf_home() / "gguf")
            convert.gguf_to_checkpoint(gguf_path, tmp)
            manifest.source, manifest.license, manifest.gguf = (
                f"package:{entry.package}",
                entry.license,
                str(gguf_path),
            )
        elif source.endswith(".gguf"):
            gguf_path = Path(source).expanduser().resolve()
            convert.gguf_to_checkpoint(gguf_path, tmp)
            manifest.source, manifest.gguf = str(gguf_path), str(gguf_path)
        else:
            convert.copy_transformers_model(source, tmp)
            manifest.license = _license_of(tmp)
        write_manifest(tmp, manifest)
    return folder


def default_name(source: str) -> str:
    if source in CATALOG:
        return source
    stem = Path(source.rstrip("/")).name
    if stem.endswith(".gguf"):
        stem = stem[: -len(".gguf")]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.").lower() or "model"


def _license_of(folder: Path) -> str:
    readme = folder / "README.md"
    if readme.is_file():
        match = re.search(r"^license:\s*(\S+)", readme.read_text(encoding="utf-8", errors="ignore"), re.M)
        if match:
            return match.group(1)
    return "unknown"


def show(name: str) -> dict[str, Any]:
    """Facts about a pulled model, read from its files without loading weights."""
    folder = entry_dir(name)
    manifest = read_manifest(name)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    n_params, dtypes = 0, set[str]()  # a GGUF entry has no safetensors: quantized_facts reads the GGUF
    if weights_format(manifest.quantization) != "gguf":
        n_params, dtypes = safetensors_summary(folder)
    info = {
        "name": name,
        "architecture": (config.get("architectures") or [config.get("model_type", "unknown")])[0],
        "model_type": config.get("model_type"),
        "parameters": n_params,
        "context_length": context_length(config),
        "dtype": ",".join(sorted(dtypes)) or config.get("dtype") or config.get("torch_dtype"),
        "size_bytes": dir_size(folder),
        "chat_template": has_chat_template(folder),
        "license": manifest.license,
        "source": manifest.source,
        "gguf": manifest.gguf,
        "quantization": manifest.quantization,
        "path": str(folder),
    }
    info.update(
        quantized_facts(manifest)
    )  # packed codes are not parameters; GGUF entries have no safetensors
    return info


def context_length(config: dict[str, Any]) -> int:
    """The model's maximum sequence length, by the keys different architectures use."""
    for key in ("max_position_embeddings", "n_positions", "seq_length", "max_sequence_length"):
        value = config.get(key) or (config.get("text_config") or {}).get(key)
        if isinstance(value, int) and value > 0:
            return value
    return 1024


def has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file():
        return True
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file():
        return bool(json.loads(tok_config.read_text(encoding="utf-8")).get("chat_template"))
    return False


_DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1, "I32": 4, "I64": 8, "F64": 8}


def safetensors_summary(folder: Path) -> tuple[int, set[str]]:
    """Parameter count and dtypes from safetensors headers (no tensor data is read)."""
    total, dtypes = 0, set()
    for file in sorted(folder.glob("*.safetensors")):
        with file.open("rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_len))
        for key, info in header.items():
            if key == "__metadata__":
                continue
            count = 1
            for dim in info["shape"]:
                count *= dim
            total += count
            dtypes.add(info["dtype"])
    if not total and not list(folder.glob("*.safetensors")):
        raise LmfError(f"{folder} has no safetensors weights")
    return total, dtypes


def weights_format(quantization: dict[str, Any] | None) -> str | None:
    """ "torch", "gguf" or None (not quantized): how a store entry's weights must be loaded."""
    if not quantization:
        return None
    return str(
        quantization.get("format")
        or ("gguf" if str(quantization.get("method", "")).startswith("gguf-") else "torch")
    )


def quantized_facts(manifest: Manifest) -> dict[str, Any]:
    """What `lmf models show` should print for a quantized entry instead of safetensors counts.

    Packed uint8 codes are not parameters, and a GGUF entry has no safetensors at all: the
    parameter count comes from the manifest (the fp32 model's), the dtype names the method.
    """
    quant = manifest.quantization or {}
    if not quant:
        return {}
    fmt = weights_format(quant)
    dtype = f"{quant['method']} ({fmt}, {quant.get('bits_per_param')} bits/param in quantized layers)"
    facts: dict[str, Any] = {"parameters": quant.get("parameters"), "dtype": dtype}
    if fmt == "gguf" and manifest.gguf and Path(manifest.gguf).is_file():
        summary = convert.gguf_summary(Path(manifest.gguf))
        facts["parameters"] = facts["parameters"] or summary["parameters"]
        facts["tensor_types"] = summary["tensor_types"]
    return facts
