"""The adapter pool: named PEFT LoRA adapters on one base model, loaded on demand under an LRU cap.

Requests name an adapter as `model="base:adapter"`; rows for different adapters share a decode
batch (peft's mixed-adapter forward, `adapter_names=[...]`). Safety rules: names match a strict
pattern (no path separators, no `..`), and adapters added at run time (`POST /v1/adapters`) must
live under an operator-configured root (`--adapter-root`), checked after resolving symlinks.
Adapters given on the command line are trusted. An adapter in use by a running request is never
evicted or deleted.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class UnknownAdapterError(LmfError):
    """No adapter of that name is registered (404)."""


class AdapterForbiddenError(LmfError):
    """The path is outside every configured adapter root (403)."""


class AdapterBusyError(LmfError):
    """The adapter is in use, or every loaded adapter is and the pool is full (409 / 503)."""


def validate_name(name: str) -> str:
    if not NAME_PATTERN.match(name) or ".." in name:
        raise InvalidInputError(
            f"invalid adapter name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit (no '..', no '/')"
        )
    return name


def check_adapter_dir(path: str | Path, roots: list[Path] | None) -> Path:
    """Resolve `path` and check it is a LoRA adapter directory (under one of `roots`, if given)."""
    resolved = Path(path).expanduser().resolve()
    if roots is not None and not any(resolved.is_relative_to(root.resolve()) for root in roots):
        if not roots:
            raise AdapterForbiddenError(
                "loading adapters at run time is disabled (start the server with --adapter-root DIR)"
            )
        raise AdapterForbiddenError(f"adapter path {path} is outside the configured adapter roots")
    config_file = resolved / "adapter_config.json"
    if not config_file.is_file():
        raise InvalidInputError(f"not a PEFT adapter directory (no adapter_config.json): {path}")
    try:
        peft_type = json.loads(config_file.read_text()).get("peft_type")
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"unreadable adapter_config.json in {path}: {exc}") from exc
    if peft_type != "LORA":
        raise InvalidInputError(
            f"only LoRA adapters can be served per request (found peft_type {peft_type!r})"
        )
    return resolved


@dataclass
class _Entry:
    path: Path
    trusted: bool


class AdapterPool:
    """Registered adapters, the loaded subset (LRU order) and in-use counts; thread-safe.

    `load_fn(name, path)` / `unload_fn(name)` do the model work (on the model thread).
    """

    def __init__(
        self,
        *,
        load_fn: Callable[[str, Path], None],
        unload_fn: Callable[[str], None],
        roots: list[Path] | None = None,
        max_loaded: int = 8,
    ) -> None:
        if max_loaded < 1:
            raise InvalidInputError("max_loaded adapters must be >= 1")
        self.roots = list(roots or [])
        self.max_loaded = max_loaded
        self._load_fn, self._unload_fn = load_fn, unload_fn
        self._known: dict[str, _Entry] = {}
        self._loaded: OrderedDict[str, None] = OrderedDict()
        self._in_use: Counter[str] = Counter()
        self._lock = threading.RLock()

    def register(self, name: str, path: str | Path, *, trusted: bool = False, load: bool = True) -> None:
        """Add an adapter (checked against the roots unless `trusted`) and load it now if `load`."""
        validate_name(name)
        resolved = check_adapter_dir(path, None if trusted else self.roots)
        with self._lock:
            if name in self._known:
                raise AdapterBusyError(f"adapter {name!r} is already registered (DELETE it first)")
            self._known[name] = _Entry(resolved, trusted)
            if load:
                try:
                    self._ensure_loaded(name)
                except Exception:
                    del self._known[name]
                    raise

    def acquire(self, name: str) -> None:
        """Mark one use of `name`, loading it (evicting the least recently used idle one) if needed."""
        with self._lock:
            if name not in self._known:
                raise UnknownAdapterError(
                    f"unknown adapter {name!r} (loaded: {', '.join(self._known) or 'none'})"
                )
            self._ensure_loaded(name)
            self._in_use[name] += 1

    def release(self, name: str) -> None:
        with self._lock:
            self._in_use[name] -= 1
            if self._in_use[name] <= 0:
                del self._in_use[name]

    def remove(self, name: str) -> None:
        with self._lock:
            if name not in self._known:
                raise UnknownAdapterError(f"unknown adapter {name!r}")
            if self._in_use[name]:
                raise AdapterBusyError(
                    f"adapter {name!r} is serving {self._in_use[name]} request(s); retry later"
                )
            if name in self._loaded:
                self._unload_fn(name)
                del self._loaded[name]
            del self._known[name]

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"name": n, "path": str(e.path), "loaded": n in self._loaded, "in_use": self._in_use[n]}
                for n, e in self._known.items()
            ]

    def names(self) -> list[str]:
        with self._lock:
            return list(self._known)

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def _ensure_loaded(self, name: str) -> None:
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return
        while len(self._loaded) >= self.max_loaded:
            idle = next((n for n in self._loaded if not self._in_use[n]), None)
            if idle is None:
                raise AdapterBusyError(
                    f"all {self.max_loaded} adapter slots are serving requests; retry later"
                )
            self._unload_fn(idle)
            del self._loaded[idle]
        self._load_fn(name, self._known[name].path)
        self._loaded[name] = None
