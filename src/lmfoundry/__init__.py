"""lmfoundry: one toolkit from a downloaded open model to a customised, measured, serving one.

Heavy libraries (torch, transformers, llama_cpp, lancedb) are imported inside the functions that
need them, so importing this package and running `lmf --help` stay instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmfoundry.generate.engine import load_model
from lmfoundry.quiet import silence_library_noise

__version__ = "0.1.0"

silence_library_noise()

if TYPE_CHECKING:
    from lmfoundry.generate.engine import LoadedModel


def load(name: str, *, backend: str = "auto", **kwargs: Any) -> LoadedModel:
    """Load a model by store name, profile name, Hugging Face id, directory or GGUF path.

    Returns a `LoadedModel` with `.generate(prompt, ...)` and `.stream(prompt, ...)`.
    """

    return load_model(name, backend=backend, **kwargs)


__all__ = ["__version__", "load"]
