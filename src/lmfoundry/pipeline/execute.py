"""Run a pipeline: stage by stage, skipping finished ones whose inputs did not change.

`--from STAGE` reuses the recorded outputs of the stages before STAGE and re-runs it and every
stage after it; `--force` re-runs everything. The first failing stage stops the run: it is
recorded as failed in state.json, later stages are not run, and the result names it.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.eval.prompting import prompt_label
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.progress import PipelineDisplay
from lmfoundry.pipeline.spec import PipelineSpec, StageSpec, build_options
from lmfoundry.pipeline.stage_kind import stage_kind
from lmfoundry.pipeline.stages.gate import GateFailed
from lmfoundry.pipeline.state import load_state, save_state, stage_key
from lmfoundry.track.runs import TRACKING_ENV


@dataclass
class StageResult:
    name: str
    kind: str
    status: str
    """done | cached | failed | not run"""
    seconds: float = 0.0
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class PipelineResult:
    name: str
    workdir: str
    stages: list[StageResult]
    wall_s: float = 0.0
    failed_stage: str | None = None
    error: str | None = None
    details: str | None = None
    """Extra text about the failure (a gate's table, a traceback)."""
    report: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed_stage is None

    def outputs(self) -> dict[str, dict[str, Any]]:
        return {s.name: s.outputs for s in self.stages if s.status in ("done", "cached")}


@contextlib.contextmanager
def tracking_uri(uri: str | None) -> Iterator[None]:
    """Point lmfoundry.track at the pipeline's tracking server for the run."""

    old = os.environ.get(TRACKING_ENV)
    if uri:
        os.environ[TRACKING_ENV] = uri
    try:
        yield
    finally:
        if uri:
            if old is None:
                os.environ.pop(TRACKING_ENV, None)
            else:
                os.environ[TRACKING_ENV] = old


def _is_fresh(stage: StageSpec, ctx: StageContext, outputs: dict[str, Any]) -> bool:
    check = stage_kind(stage.kind).fresh
    if check is None:
        return True
    try:
        return bool(check(ctx, outputs))
    except Exception:  # a check that cannot even run means "run the stage again"
        return False


def run_pipeline(
    spec: PipelineSpec,
    *,
    from_stage: str | None = None,
    force: bool = False,
    display: PipelineDisplay | None = None,
) -> PipelineResult:
    """Run `spec`; never raises for a failing stage (see `PipelineResult.failed_stage`)."""
    start = spec.names().index(spec.stage(from_stage).name) if from_stage else 0
    spec.workdir.mkdir(parents=True, exist_ok=True)
    state = load_state(spec.workdir)
    state["pipeline"] = spec.name
    display = display or PipelineDisplay([(s.name, s.kind) for s in spec.stages], live=False)
    result = PipelineResult(spec.name, str(spec.workdir), [])
    outputs: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    with tracking_uri(spec.tracking.uri), display:
        for index, stage in enumerate(spec.stages):
            record = state["stages"].get(stage.name)
            ctx = StageContext(stage.name, spec.base_dir, spec.workdir, dict(outputs), spec.tracking.enabled)
            if result.failed_stage:
                result.stages.append(StageResult(stage.name, stage.kind, "not run"))
                display.set_status(stage.name, "not run")
                continue
            if index < start:
                if not record or record.get("status") != "done":
                    raise InvalidInputError(
                        f"--from {from_stage}: stage {stage.name!r} before it has not finished; "
                        "run the pipeline without --from first"
                    )
                outputs[stage.name] = record["outputs"]
                result.stages.append(StageResult(stage.name, stage.kind, "cached", 0.0, record["outputs"]))
                display.set_status(stage.name, "cached", note="kept (--from)")
                continue
            key = stage_key(stage, spec.base_dir, outputs)
            reusable = (not force and from_stage is None and record is not None
                        and record.get("status") == "done" and record.get("key") == key)  # fmt: skip
            if reusable and record is not None and _is_fresh(stage, ctx, record["outputs"]):
                outputs[stage.name] = record["outputs"]
                result.stages.append(StageResult(stage.name, stage.kind, "cached", 0.0, record["outputs"]))
                display.set_status(stage.name, "cached", note=describe(stage.kind, record["outputs"]))
                continue
            stage_result = _run_stage(stage, ctx, key, state, spec, display, result)
            result.stages.append(stage_result)
            if stage_result.status == "done":
                outputs[stage.name] = stage_result.outputs
    result.wall_s = time.perf_counter() - started
    return result


def _run_stage(
    stage: StageSpec,
    ctx: StageContext,
    key: str,
    state: dict[str, Any],
    spec: PipelineSpec,
    display: PipelineDisplay,
    result: PipelineResult,
) -> StageResult:
    ctx.progress = display.start(stage.name)
    began = time.perf_counter()
    record: dict[str, Any] = {"status": "running", "key": key, "kind": stage.kind, "started": time.time()}
    state["stages"][stage.name] = record
    save_state(spec.workdir, state)
    try:
        options = build_options(stage, ctx.outputs)
        ctx.stage_dir.mkdir(parents=True, exist_ok=True)
        outputs = stage_kind(stage.kind).run(ctx, options)
    except (Exception, KeyboardInterrupt) as exc:
        seconds = time.perf_counter() - began
        message = str(exc) if isinstance(exc, LmfError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted"
        record.update(status="failed", error=message, seconds=round(seconds, 3))
        save_state(spec.workdir, state)
        display.set_status(stage.name, "failed", seconds, message.splitlines()[0][:80] if message else "")
        result.failed_stage, result.error = stage.name, message
        if isinstance(exc, GateFailed):
            result.details = exc.report
        elif not isinstance(exc, LmfError | KeyboardInterrupt):
            result.details = traceback.format_exc()
        if isinstance(exc, KeyboardInterrupt):
            raise
        return StageResult(stage.name, stage.kind, "failed", seconds, error=message)
    seconds = time.perf_counter() - began
    record.update(status="done", outputs=outputs, seconds=round(seconds, 3), finished=time.time())
    record.pop("error", None)
    save_state(spec.workdir, state)
    display.set_status(stage.name, "done", seconds, describe(stage.kind, outputs))
    return StageResult(stage.name, stage.kind, "done", seconds, outputs)


def describe(kind: str, outputs: dict[str, Any]) -> str:
    """A one-line result of a stage for the display and the summary table."""
    try:
        return _DESCRIBE.get(kind, lambda o: "")(outputs)
    except (KeyError, TypeError, ValueError):
        return ""


def _metric_line(outputs: dict[str, Any]) -> str:
    metrics = outputs["metrics"]
    name = "rougeL" if "rougeL" in metrics else next(iter(metrics))
    m = metrics[name]
    base = outputs.get("prompts", {}).get("champion") or {}
    asked = f" (base {prompt_label(base)})" if base else ""
    return (f"{name} {m['champion']:.3f}{asked} → {m['challenger']:.3f} "
            f"(diff {m['diff']:+.3f}, CI [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}], n={outputs['n']})")  # fmt: skip


def _loss(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


_DESCRIBE: dict[str, Any] = {
    "data": lambda o: ", ".join(f"{k} {v}" for k, v in o["sizes"].items()),
    "finetune": lambda o: f"eval loss {_loss(o.get('initial_eval_loss'))} → {_loss(o.get('eval_loss'))}",
    "quantize": lambda o: f"{o['model']}: {o['layers']} layers, {o['bytes'] / 1e6:.1f} MB",
    "evaluate": _metric_line,
    "gate": lambda o: f"passed {o['checks']} checks",
    "register": lambda o: f"{o['registry']} v{o['version']}" + (f" → {o['alias']}" if o.get("alias") else ""),
    "deploy": lambda o: f"{o['model_id']} at {o['url']} (v{o['version']})",
    "rag-index": lambda o: (
        f"{o['store']}: {o['added']} added, {o['unchanged']} unchanged, {o['chunks_written']} chunks"
    ),
    "rag-ask": lambda o: f"{len(o['citations'])} citation(s): {o['answer'][:60]!r}",
    "smoke-test": lambda o: f"HTTP parity {o['matches']}/{o['n']}",
}
