"""One registry for pluggable parts (vector stores, backends, rerankers, ...).

`@register("vector_store", "lancedb")` records a factory; `get("vector_store", "lancedb")` returns
it. `require("lancedb", extra="rag")` imports an optional dependency or raises a clear
"pip install lmfoundry[rag]" error instead of failing later with a silent None.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib import metadata
from types import ModuleType
from typing import Any, TypeVar

from lmfoundry.errors import InvalidInputError, MissingDependencyError

F = TypeVar("F", bound=Callable[..., Any])
_REGISTRY: dict[tuple[str, str], Callable[..., Any]] = {}
_ENTRY_POINT_GROUP = "lmfoundry.plugins"


def register(kind: str, name: str) -> Callable[[F], F]:
    """Decorator recording `factory` under (kind, name)."""

    def decorate(factory: F) -> F:
        _REGISTRY[(kind, name)] = factory
        return factory

    return decorate


def _load_entry_points() -> None:
    for entry_point in metadata.entry_points(group=_ENTRY_POINT_GROUP):
        entry_point.load()


def get(kind: str, name: str) -> Callable[..., Any]:
    """Return the factory registered as (kind, name); entry points are loaded on a miss."""
    if (kind, name) not in _REGISTRY:
        _load_entry_points()
    try:
        return _REGISTRY[(kind, name)]
    except KeyError:
        known = ", ".join(sorted(n for k, n in _REGISTRY if k == kind)) or "none"
        raise InvalidInputError(f"unknown {kind} {name!r} (known: {known})") from None


def names(kind: str) -> list[str]:
    return sorted(n for k, n in _REGISTRY if k == kind)


def require(module: str, *, extra: str, package: str | None = None) -> ModuleType:
    """Import an optional dependency or raise an error naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = package or module.split(".")[0]
        raise MissingDependencyError(
            f"{pkg} is not installed: pip install 'lmfoundry[{extra}]' ({exc})"
        ) from exc
