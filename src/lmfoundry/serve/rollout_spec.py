"""The rollout file of `lmf serve --rollout FILE` (YAML or JSON), also the body of `PUT /v1/rollout`.

    variants:                        # requests for the served model are split between these
      - {name: champion, weight: 90, registry: summarizer}            # alias `champion` of summarizer
      - {name: challenger, weight: 10, registry: summarizer, alias: challenger}
    user_header: X-LMF-User          # sticky: one user always lands on the same variant
    canary: {variant: challenger, window: 100, min_samples: 20, max_error_rate: 0.05, max_p95_s: 10}
    shadow: {variant: challenger, share: 0.1, pairs: shadow-pairs.jsonl}

A variant is an adapter the server serves (`adapter: NAME`), a registered model version
(`registry: NAME` with `alias:` or `version:`; the alias defaults to the variant's name), or the
base model itself (neither). Every variant runs on the one base model the server loaded, so a
split between LoRA adapters costs no extra memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lmfoundry.config import load_yaml
from lmfoundry.errors import InvalidInputError

VARIANT_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariantSpec(_Strict):
    name: str = Field(pattern=VARIANT_NAME)
    """Shown in the `X-LMF-Variant` response header and the `variant` label of the metrics."""
    weight: float = Field(1.0, ge=0)
    """Relative share of the traffic (weights need not sum to 100)."""
    adapter: str | None = None
    """An adapter the server already serves (`--adapter NAME=PATH`)."""
    registry: str | None = None
    """A registered model; its version comes from `alias` (default: the variant's name) or `version`."""
    alias: str | None = None
    version: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_target(self) -> VariantSpec:
        if self.adapter is not None and self.registry is not None:
            raise ValueError(f"variant {self.name!r}: give `adapter` or `registry`, not both")
        if self.registry is None and (self.alias is not None or self.version is not None):
            raise ValueError(f"variant {self.name!r}: `alias`/`version` need `registry`")
        if self.alias is not None and self.version is not None:
            raise ValueError(f"variant {self.name!r}: give `alias` or `version`, not both")
        return self


class CanarySpec(_Strict):
    """Live checks on one variant over its last `window` responses; the first to fail rolls it back
    (its weight drops to 0) once `min_samples` responses are in. An unset threshold is not checked."""

    variant: str
    window: int = Field(100, ge=1)
    min_samples: int = Field(20, ge=1)
    max_error_rate: float | None = Field(0.05, ge=0, le=1)
    """Share of 5xx answers."""
    max_p95_s: float | None = Field(None, gt=0)
    """95th percentile of the request latency (arrival to last byte), seconds."""
    max_empty_rate: float | None = Field(None, ge=0, le=1)
    """Share of answers whose every choice is empty or whitespace."""
    min_judge_score: float | None = None
    """Mean score of the judge (`lmf serve --canary-judge NAME`, or `create_app(canary_judge=...)`)
    on sampled answers."""
    judge_share: float = Field(0.0, ge=0, le=1)
    """Share of the variant's answers sent to the judge (above 0 when `min_judge_score` is set)."""
    min_judge_samples: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _judged(self) -> CanarySpec:
        if self.min_judge_score is not None and self.judge_share <= 0:
            raise ValueError("min_judge_score needs judge_share above 0 (no answer would be judged)")
        return self


class ShadowSpec(_Strict):
    """Mirror a share of the requests the other variants serve to `variant`, in the background;
    its answer is never returned, only stored beside the served one in `pairs` (JSONL)."""

    variant: str
    share: float = Field(gt=0, le=1)
    pairs: Path


class RolloutSpec(_Strict):
    variants: list[VariantSpec] = Field(min_length=1)
    user_header: str = Field("X-LMF-User", pattern=r"^[A-Za-z0-9-]{1,64}$")
    canary: CanarySpec | None = None
    shadow: ShadowSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RolloutSpec:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique (got {names})")
        if sum(v.weight for v in self.variants) <= 0:
            raise ValueError("at least one variant needs a weight above 0")
        for part, spec in (("canary", self.canary), ("shadow", self.shadow)):
            if spec is not None and spec.variant not in names:
                raise ValueError(f"{part}.variant {spec.variant!r} is not one of the variants {names}")
        return self

    def variant(self, name: str) -> VariantSpec:
        return next(v for v in self.variants if v.name == name)


def parse_rollout(data: Any, source: str = "rollout") -> RolloutSpec:
    """Validate a rollout mapping; errors name each bad field."""
    try:
        return RolloutSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'rollout'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInputError(f"{source}: invalid rollout: {problems}") from exc


def load_rollout(path: str | Path) -> RolloutSpec:
    """Read a rollout file (YAML, or JSON, which YAML reads too); a relative `shadow.pairs` is
    taken relative to the file."""
    path = Path(path)
    spec = parse_rollout(load_yaml(path), str(path))
    if spec.shadow is not None and not spec.shadow.pairs.is_absolute():
        spec.shadow.pairs = path.parent / spec.shadow.pairs
    return spec
