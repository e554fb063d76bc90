"""The model registry: named models with numbered versions and aliases (MLflow's registry).

A version of a registered model is a *pointer* to something lmfoundry can load: a base model
(store or packaged name) plus, usually, an adapter directory. The pointer is kept in the version's
tags (`lmf.base`, `lmf.adapter`) and its source (the adapter's absolute path, or `store:NAME`).

`champion` is the alias of the version in production. Every move of an alias is appended to a JSON
history in the registered model's tag `lmf.alias_history.<alias>`, so `rollback` can move the alias
back to the version that held it before, and a second rollback goes one step further back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.track.runs import client

CHAMPION = "champion"
HISTORY_TAG = "lmf.alias_history."
HISTORY_LIMIT = 100
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class RegistryError(LmfError):
    """A registry request that cannot be honoured (unknown model, version or alias)."""


@dataclass(frozen=True)
class Pointer:
    """What a registered version stands for: a base model and an optional adapter directory."""

    base: str
    adapter: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"base": self.base, "adapter": self.adapter}

    @property
    def source(self) -> str:
        return self.adapter or f"store:{self.base}"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInputError(
            f"invalid registered model name {name!r}: letters, digits, '_', '-', '.' (max 100)"
        )
    return name


def check_alias(alias: str) -> str:
    if not _ALIAS.match(alias) or alias.lower() == "latest" or re.fullmatch(r"v\d+", alias):
        raise InvalidInputError(f"invalid alias {alias!r}: a letter then letters, digits, '_', '-'")
    return alias


def _not_found(exc: Exception) -> bool:
    return "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower()


def _get_model(c: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return c.get_registered_model(check_name(name))
    except MlflowException as exc:
        if _not_found(exc):
            raise RegistryError(f"no registered model {name!r} (see `lmf registry list`)") from exc
        raise


def register(
    name: str,
    pointer: Pointer,
    *,
    run_id: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
) -> int:
    """Add a version of `name` (creating the registered model on first use); return its number."""
    from mlflow.exceptions import MlflowException

    if not pointer.base:
        raise InvalidInputError("a registered version needs a base model")
    if pointer.adapter is not None:
        adapter = Path(pointer.adapter).expanduser().resolve()
        if not (adapter / "adapter_config.json").is_file():
            raise InvalidInputError(f"not an adapter directory (no adapter_config.json): {pointer.adapter}")
        pointer = Pointer(pointer.base, str(adapter))
    c = client()
    try:
        c.create_registered_model(check_name(name))
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(getattr(exc, "error_code", "")):
            raise
    version_tags = {"lmf.base": pointer.base, **({"lmf.adapter": pointer.adapter} if pointer.adapter else {})}
    version = c.create_model_version(
        name,
        source=pointer.source,
        run_id=run_id,
        tags={**version_tags, **(tags or {})},
        description=description,
    )
    return int(version.version)


def pointer_of(version: Any) -> Pointer:
    tags = version.tags or {}
    base = tags.get("lmf.base")
    if not base:
        raise RegistryError(f"version {version.version} of {version.name} has no lmf.base tag")
    return Pointer(base, tags.get("lmf.adapter"))


def _version(c: Any, name: str, version: int) -> Any:
    from mlflow.exceptions import MlflowException

    _get_model(c, name)
    try:
        return c.get_model_version(name, str(version))
    except MlflowException as exc:
        if _not_found(exc):
            raise RegistryError(f"{name} has no version {version}") from exc
        raise


def resolve(name: str, alias: str = CHAMPION) -> tuple[int, Pointer]:
    """(version, pointer) that `alias` of `name` points at."""
    c = client()
    model = _get_model(c, name)
    if alias not in (model.aliases or {}):
        raise RegistryError(f"{name} has no {alias!r} alias (promote a version first)")
    version = int(model.aliases[alias])
    return version, pointer_of(_version(c, name, version))


def history(name: str, alias: str = CHAMPION) -> list[int]:
    """The versions `alias` pointed at, oldest first (the last one is the current holder)."""
    model = _get_model(client(), name)
    return _history(model, alias)


def _history(model: Any, alias: str) -> list[int]:
    raw = (model.tags or {}).get(HISTORY_TAG + alias)
    if not raw:
        return []
    try:
        return [int(v) for v in json.loads(raw)]
    except (ValueError, TypeError) as exc:
        raise RegistryError(f"{model.name}: corrupt alias history tag {HISTORY_TAG + alias}") from exc


def _set_alias(c: Any, name: str, alias: str, version: int, entries: list[int]) -> None:
    c.set_registered_model_alias(name, alias, str(version))
    c.set_registered_model_tag(name, HISTORY_TAG + alias, json.dumps(entries[-HISTORY_LIMIT:]))


def promote(name: str, version: int, alias: str = CHAMPION) -> dict[str, Any]:
    """Point `alias` at `version` and record the move; returns {"previous", "version"}."""
    check_alias(alias)
    c = client()
    model = _get_model(c, name)
    _version(c, name, version)
    current = (model.aliases or {}).get(alias)
    entries = _history(model, alias)
    if current is not None and (not entries or entries[-1] != int(current)):
        entries.append(int(current))  # the alias was moved outside lmf: keep the trail honest
    if not entries or entries[-1] != version:
        entries.append(version)
    _set_alias(c, name, alias, version, entries)
    return {
        "name": name,
        "alias": alias,
        "previous": None if current is None else int(current),
        "version": version,
    }


def rollback(name: str, alias: str = CHAMPION) -> dict[str, Any]:
    """Move `alias` back to the version that held it before the current one."""
    check_alias(alias)
    c = client()
    model = _get_model(c, name)
    current = (model.aliases or {}).get(alias)
    if current is None:
        raise RegistryError(f"{name} has no {alias!r} alias to roll back")
    entries = _history(model, alias)
    if entries and entries[-1] == int(current):
        entries.pop()
    existing = {int(v.version) for v in c.search_model_versions(f"name='{name}'")}
    while entries and entries[-1] not in existing:
        entries.pop()  # that version was deleted since
    if not entries:
        raise RegistryError(f"{name}: no earlier version held {alias!r} (version {current} is the first)")
    target = entries[-1]
    _set_alias(c, name, alias, target, entries)
    return {"name": name, "alias": alias, "previous": int(current), "version": target}


def list_models() -> list[dict[str, Any]]:
    """Every registered model with its latest version and aliases."""
    c = client()
    rows = []
    for model in c.search_registered_models(max_results=1000):
        versions = c.search_model_versions(f"name='{model.name}'")
        rows.append(
            {
                "name": model.name,
                "versions": len(versions),
                "latest": max((int(v.version) for v in versions), default=None),
                "aliases": {k: int(v) for k, v in (model.aliases or {}).items()},
            }
        )
    return sorted(rows, key=lambda r: r["name"])


def show(name: str) -> dict[str, Any]:
    """A registered model's versions (pointer, run, aliases) and its alias histories."""
    c = client()
    model = _get_model(c, name)
    aliases = {k: int(v) for k, v in (model.aliases or {}).items()}
    by_version: dict[int, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append(alias)
    versions = []
    for v in sorted(c.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        tags = v.tags or {}
        versions.append(
            {
                "version": int(v.version),
                "base": tags.get("lmf.base"),
                "adapter": tags.get("lmf.adapter"),
                "source": v.source,
                "run_id": v.run_id,
                "created": int(v.creation_timestamp or 0) // 1000,
                "aliases": sorted(by_version.get(int(v.version), [])),
                "description": v.description or "",
            }
        )
    histories = {
        key[len(HISTORY_TAG) :]: json.loads(value)
        for key, value in (model.tags or {}).items()
        if key.startswith(HISTORY_TAG)
    }
    return {"name": name, "aliases": aliases, "versions": versions, "alias_history": histories}
