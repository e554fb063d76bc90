"""Resolve a model name to files, and load tokenizers and transformers models from them.

A name is tried, in order, as: a profile (`lmf models create`), a store entry, a packaged model
(pulled into the store on first use, like `ollama run`), a `.gguf` file, a transformers directory,
and a Hugging Face hub id (offline, a clear error names HF_HUB_OFFLINE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry import paths, plugins
from lmfoundry.errors import LmfError, ModelNotFoundError
from lmfoundry.models import profile as profiles
from lmfoundry.models import store
from lmfoundry.models.adapters import apply_adapter
from lmfoundry.models.catalog import CATALOG, packaged_gguf
from lmfoundry.models.convert import check_gguf_file, hub_error
from lmfoundry.models.store import weights_format
from lmfoundry.quiet import quiet_loading

if TYPE_CHECKING:
    from lmfoundry.models.profile import Profile


@dataclass
class ResolvedModel:
    """Where a model's weights are. At least one of `source` kinds is set."""

    name: str
    kind: str
    """One of: store, catalog, gguf, directory, hub."""
    location: str
    """Store name, catalog name, file path, directory path or hub id."""
    gguf: Path | None = None
    profile: Profile | None = None
    manifest: store.Manifest | None = None
    adapters: list[str] = field(default_factory=list)

    def checkpoint(self) -> str:
        """A transformers-loadable directory or hub id, pulling packaged/GGUF sources once."""
        if self.kind in ("store", "directory", "hub"):
            return str(store.entry_dir(self.location)) if self.kind == "store" else self.location
        folder = store.pull(self.location)
        self.manifest = store.read_manifest(folder.name)
        return str(folder)

    @property
    def quantization(self) -> dict[str, Any] | None:
        return self.manifest.quantization if self.manifest else None


def resolve(name: str) -> ResolvedModel:
    """Find what `name` refers to without loading weights (and without pulling)."""
    found_profile = profiles.find(name)
    if found_profile is not None:
        base = resolve(found_profile.base)
        base.name, base.profile = name, found_profile
        base.adapters = list(found_profile.adapters) + base.adapters
        return base
    if store.is_pulled(name):
        manifest = store.read_manifest(name)
        gguf = Path(manifest.gguf) if manifest.gguf and Path(manifest.gguf).is_file() else None
        return ResolvedModel(name, "store", name, gguf=gguf, manifest=manifest)
    if name in CATALOG:
        return ResolvedModel(name, "catalog", name, gguf=_catalog_gguf(name))
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        check_gguf_file(path)
        return ResolvedModel(name, "gguf", str(path.resolve()), gguf=path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is a directory but not a transformers model (no config.json)")
        return ResolvedModel(name, "directory", str(path.resolve()))
    if "/" in name and not path.exists() and not name.startswith((".", "/", "~")):
        return ResolvedModel(name, "hub", name)
    raise ModelNotFoundError(
        f"unknown model {name!r}: not a profile, store entry, packaged model, GGUF file or directory "
        f"(packaged: {', '.join(CATALOG)}; see `lmf models list`)"
    )


def _catalog_gguf(name: str) -> Path | None:
    return packaged_gguf(CATALOG[name], paths.lmf_home() / "gguf")


def load_tokenizer(name: str) -> Any:
    """The transformers tokenizer of a model (with a profile's chat-template override)."""
    resolved = resolve(name)
    return _tokenizer_for(resolved, resolved.checkpoint())


def _tokenizer_for(resolved: ResolvedModel, checkpoint: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    except OSError as exc:
        raise hub_error(checkpoint, exc) from exc
    if resolved.profile and resolved.profile.chat_template:
        tokenizer.chat_template = resolved.profile.chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_hf_model(name: str, *, adapters: list[str] | None = None) -> tuple[Any, Any]:
    """Load (model, tokenizer) with transformers in fp32 on CPU, applying adapters if any.

    Quantized store entries are rebuilt from their packed weights (never materialising fp32).
    """
    resolved = resolve(name)
    checkpoint = resolved.checkpoint()
    tokenizer = _tokenizer_for(resolved, checkpoint)

    stored_as = weights_format(resolved.quantization)
    if stored_as == "gguf":
        raise LmfError(
            f"{name} is a GGUF quantization: run it with --backend llama_cpp (transformers needs the "
            "fp32 or nf4/fp4/int8 entries)"
        )
    # packed formats are loaded by their `weights` plugin (nf4/fp4/int8: lmfoundry.quantize)
    model = (
        _from_pretrained(checkpoint)
        if stored_as is None
        else plugins.get("weights", stored_as)(Path(checkpoint))
    )
    for adapter in [*resolved.adapters, *(adapters or [])]:
        model = apply_adapter(model, adapter)
    model.eval()
    return model, tokenizer


def _from_pretrained(checkpoint: str) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        with quiet_loading():
            return AutoModelForCausalLM.from_pretrained(checkpoint, dtype="float32")
    except OSError as exc:
        raise hub_error(checkpoint, exc) from exc
