"""The pipeline file: a name, a work folder, tracking settings and an ordered list of stages.

    name: quickstart
    stages:
      - kind: data
        dataset: dialogsum-synthetic
      - kind: finetune
        config: ../finetune/quickstart-lora.yaml
        overrides: ["data.path=${data.path}"]

Every key of a stage other than `kind` and `name` is an option of that stage kind (unknown ones
are errors). `${STAGE.KEY}` inside a value is replaced by an output of an earlier stage when the
stage runs; those references are also the stage's inputs for caching. Relative file paths in
options resolve against the pipeline file's folder; a relative `workdir` against the current one.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.config import apply_overrides, build, load_yaml
from lmfoundry.errors import InvalidInputError
from lmfoundry.paths import lmf_home
from lmfoundry.pipeline.stage_kind import stage_kind, stage_names

REF = re.compile(r"\$\{([A-Za-z0-9_-]+)\.([A-Za-z0-9_.-]+)\}")
_STAGE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_TOP_KEYS = {"name", "workdir", "tracking", "stages", "description"}


@dataclass
class TrackingConfig:
    enabled: bool = True
    """Log finetune and evaluate stages as MLflow runs (and link registered versions to them)."""
    uri: str | None = None
    """MLflow tracking/registry URI (e.g. http://mlflow:5000); None = $LMF_TRACKING_URI or local sqlite."""


@dataclass
class StageSpec:
    name: str
    kind: str
    options: dict[str, Any]
    needs: list[str] = field(default_factory=list)
    """Earlier stages this one depends on beyond its `${...}` references (cache inputs)."""

    def refs(self) -> list[tuple[str, str]]:
        """(stage, output key) pairs this stage's options refer to."""
        return [(m.group(1), m.group(2)) for text in _strings(self.options) for m in REF.finditer(text)]

    def inputs(self) -> list[str]:
        return list(dict.fromkeys([*self.needs, *(stage for stage, _ in self.refs())]))


@dataclass
class PipelineSpec:
    name: str
    path: Path
    """The pipeline file (relative option paths resolve against its folder)."""
    workdir: Path
    stages: list[StageSpec]
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    description: str = ""

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def stage(self, name: str) -> StageSpec:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise InvalidInputError(f"no stage {name!r} in {self.path} (stages: {', '.join(self.names())})")

    def names(self) -> list[str]:
        return [s.name for s in self.stages]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineSpec:
    """Read and check a pipeline file: known stage kinds, unique names, options, references."""

    path = Path(path).expanduser().resolve()
    data = apply_overrides(load_yaml(path), overrides or [])
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise InvalidInputError(
            f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOP_KEYS))}"
        )
    name = data.get("name") or path.stem
    if not isinstance(name, str) or not _STAGE_NAME.match(name):
        raise InvalidInputError(f"{path}: pipeline name {name!r} must be a simple identifier")
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise InvalidInputError(f"{path}: 'stages' must be a non-empty list")
    stages = [_stage(item, i, path) for i, item in enumerate(raw_stages)]
    _check_stages(stages, path)
    tracking = build(TrackingConfig, data.get("tracking") or {}, "tracking.")
    workdir = Path(data["workdir"]).expanduser() if data.get("workdir") else lmf_home() / "pipelines" / name
    return PipelineSpec(
        name=name,
        path=path,
        workdir=workdir.resolve(),
        stages=stages,
        tracking=tracking,
        description=str(data.get("description") or ""),
    )


def _stage(item: Any, index: int, path: Path) -> StageSpec:
    if not isinstance(item, dict) or "kind" not in item:
        raise InvalidInputError(f"{path}: stage #{index + 1} must be a mapping with a 'kind'")
    options = {k: v for k, v in item.items() if k not in ("kind", "name", "needs")}
    name = str(item.get("name") or item["kind"])
    if not _STAGE_NAME.match(name):
        raise InvalidInputError(f"{path}: stage name {name!r} must be a simple identifier")
    needs = item.get("needs") or []
    if isinstance(needs, str):
        needs = [needs]
    if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
        raise InvalidInputError(f"{path}: stage {name!r}: 'needs' must be a stage name or a list of them")
    return StageSpec(name=name, kind=str(item["kind"]), options=options, needs=needs)


def _check_stages(stages: list[StageSpec], path: Path) -> None:
    seen: set[str] = set()
    for stage in stages:
        where = f"{path}: stage {stage.name!r}"
        if stage.kind not in stage_names():
            raise InvalidInputError(
                f"{where}: unknown kind {stage.kind!r} (known: {', '.join(stage_names())})"
            )
        if stage.name in seen:
            raise InvalidInputError(f"{where}: duplicate stage name (give one of them a 'name')")
        for ref_stage, _key in stage.refs():
            if ref_stage not in seen:
                raise InvalidInputError(
                    f"{where}: ${{{ref_stage}...}} refers to a stage that does not run before it"
                )
        for need in stage.needs:
            if need not in seen:
                raise InvalidInputError(f"{where}: needs {need!r}, which does not run before it")
        seen.add(stage.name)
        options_cls = stage_kind(stage.kind).options
        known = {f.name for f in dataclasses.fields(options_cls)}
        unknown = sorted(set(stage.options) - known)
        if unknown:
            raise InvalidInputError(
                f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if not stage.refs():
            build(options_cls, stage.options, f"{stage.name}.")  # type errors now, not mid-run


def interpolate(value: Any, outputs: dict[str, dict[str, Any]]) -> Any:
    """Replace `${stage.key}` references with earlier stages' outputs (a whole-string reference
    keeps the output's type)."""
    if isinstance(value, dict):
        return {k: interpolate(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, outputs) for v in value]
    if not isinstance(value, str):
        return value
    whole = REF.fullmatch(value)
    if whole:
        return _lookup(outputs, whole.group(1), whole.group(2))
    return REF.sub(lambda m: str(_lookup(outputs, m.group(1), m.group(2))), value)


def _lookup(outputs: dict[str, dict[str, Any]], stage: str, key: str) -> Any:
    if stage not in outputs:
        raise InvalidInputError(f"${{{stage}.{key}}}: stage {stage!r} has no recorded outputs")
    node: Any = outputs[stage]
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "none"
            raise InvalidInputError(f"${{{stage}.{key}}}: no output {part!r} (outputs: {known})")
        node = node[part]
    return node


def build_options(stage: StageSpec, outputs: dict[str, dict[str, Any]]) -> Any:
    """The stage's typed options with references filled in."""

    return build(stage_kind(stage.kind).options, interpolate(stage.options, outputs), f"{stage.name}.")
