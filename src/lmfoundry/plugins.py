"""One registry for the parts a user or another package can add: inference backends, weight
formats, vector stores, rerankers, judges, evaluation tasks and pipeline stage kinds.

A part is an object (usually a factory) registered under (kind, name). lmfoundry's own parts are
declared in `BUILTINS` the way an entry point declares one: a `"module:attribute"` reference that
is imported only when the part is first asked for, so `lmf --help` stays instant and a layer can
offer a part that a lower layer uses (the model loader finds the quantized-weights loader here,
not by importing `lmfoundry.quantize`). That is the pattern of simonw/llm, whose built-in models
and tools go through the same plugin hooks a third-party package uses.

A third-party package adds parts through the `lmfoundry.plugins` entry-point group:

    [project.entry-points."lmfoundry.plugins"]
    my_parts = "my_package.lmf:register_plugins"

where `register_plugins(register)` calls `register("reranker", "keyword", factory)` for each part
(an entry point that names a module instead may call `@lmfoundry.plugins.register(...)` at import).
What each kind's object must be is in `KINDS`; docs/architecture.md has the file to copy for each.

`require("lancedb", extra="rag")` imports an optional dependency or raises a clear
"pip install lmfoundry[rag]" error instead of failing later with a silent None.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib import metadata
from types import ModuleType
from typing import Any, TypeVar, overload

from lmfoundry.errors import InvalidInputError, LmfError, MissingDependencyError

F = TypeVar("F")
ENTRY_POINT_GROUP = "lmfoundry.plugins"

KINDS = {
    "backend": "load(resolved, adapters, threads) -> Backend (lmfoundry.generate.backend)",
    "weights": "load(checkpoint_dir) -> torch model, for a store entry whose quantization.format is the name",
    "vector_store": "factory(path, dimension) -> VectorStore (lmfoundry.rag.stores.base)",
    "reranker": "factory(arg: str) -> Reranker (lmfoundry.rag.rerank); `--rerank NAME[:ARG]`",
    "judge": "factory(arg: str, params) -> JudgeBackend (lmfoundry.eval.judge); `--judge NAME:ARG`",
    "task": "factory(arg: str, data_dir) -> Task (lmfoundry.eval.tasks); `--task NAME[:ARG]`",
    "stage": "StageKind (lmfoundry.pipeline.stage_kind): a pipeline `kind:`",
    "safety_classifier": "f(text) -> float (probability unsafe) or bool; `lmf serve --guardrails` classifier",
    "canary_judge": "f(question, answer) -> float score; `lmf serve --canary-judge NAME` (rollout canary)",
}

BUILTINS: dict[str, dict[str, str]] = {
    "backend": {
        "transformers": "lmfoundry.generate.hf_backend:load_backend",
        "llama_cpp": "lmfoundry.generate.llamacpp_backend:load_backend",
    },
    "weights": {"torch": "lmfoundry.quantize.modules:load_quantized"},
    "vector_store": {
        "lancedb": "lmfoundry.rag.stores.lancedb_store:open_lancedb",
        "qdrant": "lmfoundry.rag.stores.qdrant_store:open_qdrant",
    },
    "reranker": {
        "mmr": "lmfoundry.rag.rerank:mmr_reranker",
        "per-source": "lmfoundry.rag.rerank:per_source_reranker",
        "cross-encoder": "lmfoundry.rag.rerank:cross_encoder_reranker",
        "llm": "lmfoundry.rag.rerank:llm_reranker",
    },
    "judge": {
        "model": "lmfoundry.eval.judge:model_judge",
        "openai": "lmfoundry.eval.judge:openai_judge",
    },
    "task": {
        "dialogsum-synthetic": "lmfoundry.eval.tasks:dialogsum_factory",
        "closed-book-qa": "lmfoundry.eval.tasks:closed_book_qa_factory",
        "jsonl": "lmfoundry.eval.tasks:jsonl_factory",
    },
    "stage": {
        name: f"lmfoundry.pipeline.stages.{module}:KIND"
        for name, module in (
            ("data", "data"),
            ("finetune", "finetune"),
            ("quantize", "quantize"),
            ("evaluate", "evaluate"),
            ("gate", "gate"),
            ("register", "register"),
            ("deploy", "deploy"),
            ("rag-index", "rag_index"),
            ("rag-ask", "rag_ask"),
            ("smoke-test", "endpoint_check"),
            ("monitor", "monitor"),
        )
    },
}

_REGISTRY: dict[tuple[str, str], Any] = {}
_ORIGIN: dict[tuple[str, str], str] = {}
_entry_points_loaded = False


@overload
def register(kind: str, name: str) -> Callable[[F], F]: ...
@overload
def register(kind: str, name: str, part: F) -> F: ...
def register(kind: str, name: str, part: Any = None) -> Any:
    """Record `part` under (kind, name); without `part`, a decorator that records what it decorates."""
    _check_kind(kind)

    def record(obj: Any) -> Any:
        key = (kind, name)
        if name in BUILTINS.get(kind, {}) or (key in _REGISTRY and _REGISTRY[key] is not obj):
            raise LmfError(f"{kind} {name!r} is already provided by {_origin(key)}; pick another name")
        _REGISTRY[key] = obj
        _ORIGIN[key] = getattr(obj, "__module__", None) or "a plugin"
        return obj

    return record if part is None else record(part)


def get(kind: str, name: str) -> Any:
    """The part registered as (kind, name): a built-in (imported now), or a plugin's."""
    _check_kind(kind)
    reference = BUILTINS.get(kind, {}).get(name)
    if reference is not None:
        return _resolve(reference)
    load_entry_points()
    try:
        return _REGISTRY[(kind, name)]
    except KeyError:
        raise InvalidInputError(
            f"unknown {kind.replace('_', ' ')} {name!r} (known: {', '.join(names(kind))})"
        ) from None


def names(kind: str) -> list[str]:
    """Every name of this kind: built-ins first, then plugins', each group sorted."""
    _check_kind(kind)
    load_entry_points()
    builtin = sorted(BUILTINS.get(kind, {}))
    return builtin + sorted(n for k, n in _REGISTRY if k == kind and n not in builtin)


def load_hook(kind: str, name: str, what: str) -> Callable[..., Any]:
    """A callable hook: the part registered as (kind, name), or `module:function` imported from the
    Python path (the user's own code, without writing a plugin). `what` names it in errors."""
    if name in names(kind):
        found: Callable[..., Any] = get(kind, name)
        return found
    module, _, attribute = name.partition(":")
    if not module or not attribute:
        raise InvalidInputError(f"{what} {name!r} is neither a {kind} plugin nor a module:function path")
    try:
        target = _resolve(name)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"cannot load {what} {name!r}: {exc}") from exc
    if not callable(target):
        raise InvalidInputError(f"{what} {name!r} is not callable")
    return target  # type: ignore[no-any-return]


def parse_spec(spec: str) -> tuple[str, str]:
    """`"per-source:2"` -> ("per-source", "2"); `"mmr"` -> ("mmr", "")."""
    name, _, arg = spec.partition(":")
    return name.strip(), arg.strip()


def load_entry_points() -> None:
    """Import every `lmfoundry.plugins` entry point once; a callable one is called with `register`."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry_point.load()
        except Exception as exc:
            raise LmfError(
                f"plugin {entry_point.name!r} ({entry_point.value}) failed to load: {exc}"
            ) from exc
        if callable(loaded):
            loaded(register)


def _resolve(reference: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def _origin(key: tuple[str, str]) -> str:
    return "lmfoundry" if key[1] in BUILTINS.get(key[0], {}) else _ORIGIN.get(key, "a plugin")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidInputError(f"unknown plugin kind {kind!r} (kinds: {', '.join(KINDS)})")


def require(module: str, *, extra: str, package: str | None = None) -> ModuleType:
    """Import an optional dependency or raise an error naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = package or module.split(".")[0]
        raise MissingDependencyError(
            f"{pkg} is not installed: pip install 'lmfoundry[{extra}]' ({exc})"
        ) from exc
