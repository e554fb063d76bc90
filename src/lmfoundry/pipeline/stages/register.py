"""Register the candidate (base + adapter) as a new version and give it the champion alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.stage_kind import StageKind
from lmfoundry.track import registry


@dataclass
class Options:
    registry: str = ""
    """Registered model name."""
    model: str = ""
    """Base model (store or packaged name)."""
    adapter: str | None = None
    """Adapter directory (usually `${finetune.adapter_path}`)."""
    run_id: str | None = None
    """MLflow run that produced it (usually `${finetune.run_id}`)."""
    alias: str | None = "champion"
    """Alias to move to the new version (None = register only)."""
    description: str = ""


def run(ctx: StageContext, options: Options) -> dict[str, Any]:
    if not options.registry or not options.model:
        raise InvalidInputError("register stage needs 'registry' (registered model name) and 'model' (base)")
    adapter = str(ctx.path(options.adapter)) if options.adapter else None
    pointer = registry.Pointer(options.model, adapter)
    version = registry.register(
        options.registry,
        pointer,
        run_id=options.run_id,
        description=options.description or f"pipeline stage {ctx.name}",
    )
    ctx.progress.note(f"{options.registry} v{version}")
    if options.alias:
        registry.promote(options.registry, version, options.alias)
    return {"registry": options.registry, "version": version, "alias": options.alias, **pointer.to_dict()}


def fresh(ctx: StageContext, outputs: dict[str, Any]) -> bool:
    """Still valid while the version exists (an alias moved since by promote/rollback is respected)."""

    try:
        return any(v["version"] == outputs["version"] for v in registry.show(outputs["registry"])["versions"])
    except registry.RegistryError:
        return False


KIND = StageKind(Options, run, fresh, summary=(__doc__ or "").strip().splitlines()[0])
