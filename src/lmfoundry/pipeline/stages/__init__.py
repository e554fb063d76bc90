"""The stage kinds a pipeline can use; one module per kind, each with an `Options` dataclass,
`run(ctx, options) -> outputs` and optionally `fresh(ctx, outputs) -> bool` (may a cached result
be reused as is?)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmfoundry.pipeline.stages import (
    data,
    deploy,
    evaluate,
    finetune,
    gate,
    quantize,
    rag_ask,
    rag_index,
    register,
    smoke_test,
)


@dataclass(frozen=True)
class StageKind:
    name: str
    options: type
    run: Callable[..., dict[str, Any]]
    fresh: Callable[..., bool] | None
    summary: str


def _kind(name: str, module: Any) -> StageKind:
    doc = (module.__doc__ or "").strip().splitlines()[0]
    return StageKind(name, module.Options, module.run, getattr(module, "fresh", None), doc)


STAGES: dict[str, StageKind] = {
    "data": _kind("data", data),
    "finetune": _kind("finetune", finetune),
    "quantize": _kind("quantize", quantize),
    "evaluate": _kind("evaluate", evaluate),
    "gate": _kind("gate", gate),
    "register": _kind("register", register),
    "deploy": _kind("deploy", deploy),
    "rag-index": _kind("rag-index", rag_index),
    "rag-ask": _kind("rag-ask", rag_ask),
    "smoke-test": _kind("smoke-test", smoke_test),
}
