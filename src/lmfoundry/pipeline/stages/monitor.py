"""Compare captured traffic with a reference window; drift stops the pipeline (as a failed gate does)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.monitor.run import MonitorRequest, run_monitor
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.stage_kind import StageKind


class DriftDetected(LmfError):
    """A monitor threshold flagged drift; the report says which checks."""


@dataclass
class Options:
    reference: str = ""
    """Capture database or JSONL of the reference window (relative to the pipeline file)."""
    current: str = ""
    """Capture database or JSONL of the current window (may be the reference file with another range)."""
    reference_range: str | None = None
    """START..END (ISO 8601 times or durations before now such as 60d..30d)."""
    current_range: str | None = None
    thresholds: str | None = None
    """A thresholds YAML (relative to the pipeline file); the defaults otherwise."""
    judge: str | None = None
    judge_sample: int = 20
    permutations: int = 1000
    fail_on_drift: bool = True
    """Stop the pipeline when drift is flagged (False: record the report and go on)."""


def run(ctx: StageContext, options: Options) -> dict[str, Any]:
    if not (options.reference and options.current):
        raise InvalidInputError("monitor stage needs 'reference' and 'current' capture files")
    request = MonitorRequest(
        reference=str(ctx.path(options.reference)),
        current=str(ctx.path(options.current)),
        reference_range=options.reference_range,
        current_range=options.current_range,
        thresholds=str(ctx.path(options.thresholds)) if options.thresholds else None,
        out=str(ctx.stage_dir),
        judge=options.judge,
        judge_sample=options.judge_sample,
        permutations=options.permutations,
    )
    result, paths = run_monitor(request, progress=ctx.progress.note)
    flagged = [c.name for c in result.checks if c.flagged]
    if flagged and options.fail_on_drift:
        raise DriftDetected(f"drift flagged by {', '.join(flagged)} (see {paths['html']})")
    return {"drifted": result.drifted, "flagged": flagged, "report": str(paths["html"]),
            "summary": str(paths["json"])}  # fmt: skip


KIND = StageKind(Options, run, None, summary=(__doc__ or "").strip().splitlines()[0])
