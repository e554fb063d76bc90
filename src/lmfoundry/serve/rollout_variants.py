"""Rollout variants against this server: what each variant of a rollout file runs (an adapter the
server serves, a registered version whose adapter joins the pool, or the base model), and the
promotion of a variant to champion (the registry alias and the rollout that follows).

Resolution is checked when a rollout is applied, so a typo or a version on another base model is a
400 for `PUT /v1/rollout` (or an error at start), not a failure on the request path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import LmfError
from lmfoundry.serve.adapter_pool import validate_name
from lmfoundry.serve.errors import APIError
from lmfoundry.serve.rollout_spec import RolloutSpec, VariantSpec
from lmfoundry.track import registry

if TYPE_CHECKING:
    from lmfoundry.serve.service import ServedModel


@dataclass(frozen=True)
class LiveVariant:
    """A variant resolved to what the server runs: an adapter of the served base, or the base."""

    name: str
    weight: float
    adapter: str | None
    registry: str | None = None
    version: int | None = None


def public(v: LiveVariant) -> dict[str, Any]:
    """The variant as `GET /v1/rollout` shows it."""
    return {
        "name": v.name,
        "weight": v.weight,
        "adapter": v.adapter,
        "registry": v.registry,
        "version": v.version,
    }


def promoted(spec: RolloutSpec, live: LiveVariant) -> tuple[RolloutSpec, dict[str, Any] | None]:
    """The rollout after `live` becomes the `champion` variant (pinned to its registry version or
    adapter, with the old champion's weight), and the registry's alias move (None for an adapter).
    A canary or shadow on the promoted variant ends."""
    name = live.name
    moved = None
    if live.registry is not None and live.version is not None:
        moved = registry.promote(live.registry, live.version, registry.CHAMPION)
    pinned = (
        {"registry": live.registry, "version": live.version} if live.registry else {"adapter": live.adapter}
    )
    others = [v for v in spec.variants if v.name != name]
    old = next((v for v in others if v.name == registry.CHAMPION), None)
    weight = old.weight if old is not None else spec.variant(name).weight
    champion = VariantSpec(name=registry.CHAMPION, weight=weight, **pinned)  # type: ignore[arg-type]
    variants = [champion if v.name == registry.CHAMPION else v for v in others]
    if old is None:
        variants.insert(0, champion)
    update: dict[str, Any] = {"variants": variants}
    for part in ("canary", "shadow"):
        section = getattr(spec, part)
        if section is not None and section.variant == name:
            update[part] = None
    return RolloutSpec.model_validate({**spec.model_dump(), **update}), moved


def resolve_variant(spec: VariantSpec, served: ServedModel) -> LiveVariant:
    """What a variant runs on this server; registry adapters are added to the pool (trusted: the
    operator's registry, reached only by a key holder)."""
    if spec.adapter is not None:
        if served.adapters is None or spec.adapter not in served.adapters.names():
            raise LmfError(
                f"variant {spec.name!r}: this server serves no adapter {spec.adapter!r} "
                f"(serving: {', '.join(served.model_ids())})"
            )
        return LiveVariant(spec.name, spec.weight, spec.adapter)
    if spec.registry is None:
        return LiveVariant(spec.name, spec.weight, None)
    version, pointer = _registered(spec)
    if pointer.base not in (served.name, served.loaded.name) and not _same_path(
        pointer.base, served.loaded.name
    ):
        raise LmfError(
            f"variant {spec.name!r}: {spec.registry} v{version} runs on base {pointer.base!r}, but this "
            f"server serves {served.loaded.name!r} (variants must share the served base model)"
        )
    adapter = None
    if pointer.adapter is not None:
        adapter = _pool_adapter(served, f"{spec.registry}-v{version}", pointer.adapter, spec.name)
    return LiveVariant(spec.name, spec.weight, adapter, spec.registry, version)


def _registered(spec: VariantSpec) -> tuple[int, registry.Pointer]:
    assert spec.registry is not None
    if spec.version is None:
        return registry.resolve(spec.registry, spec.alias or spec.name)
    for row in registry.show(spec.registry)["versions"]:
        if row["version"] == spec.version:
            return spec.version, registry.Pointer(row["base"], row["adapter"])
    raise registry.RegistryError(f"{spec.registry} has no version {spec.version}")


def _same_path(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _pool_adapter(served: ServedModel, name: str, path: str, variant: str) -> str:
    pool = served.adapters
    if pool is None:
        raise LmfError(f"variant {variant!r} is an adapter, but this backend serves no adapters")
    name = validate_name(name[:64])
    known = {a["name"]: a["path"] for a in pool.describe()}
    if name not in known:
        pool.register(name, path, trusted=True, load=len(pool.loaded()) < pool.max_loaded)
    return name


def unavailable(variant: str, adapter: str) -> APIError:
    """The variant's adapter vanished from the pool (deleted at run time): a server-side failure."""
    return APIError(503, f"rollout variant {variant!r} is unavailable (adapter {adapter!r} is not served)")
