"""Check the comparison against release gates; a failure stops the pipeline before register/deploy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.eval.compare import load_comparison
from lmfoundry.eval.gates import GateSpec, check_gates, load_gates
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.stage_kind import StageKind


class GateFailed(LmfError):
    """The candidate did not pass the gates; `report` is the markdown table."""

    def __init__(self, message: str, report: str) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Options:
    comparison: str = ""
    """comparison.json from the evaluate stage (usually `${evaluate.comparison}`)."""
    gates: str | None = None
    """A gates YAML (relative to the pipeline file), e.g. ../gates/default.yaml."""
    rules: dict[str, Any] = field(default_factory=dict)
    """Inline gates in the same format as a gates YAML (used when `gates` is not set)."""


def run(ctx: StageContext, options: Options) -> dict[str, Any]:
    from pydantic import ValidationError

    if not options.comparison:
        raise InvalidInputError("gate stage needs 'comparison' (e.g. ${evaluate.comparison})")
    if options.gates:
        spec = load_gates(ctx.path(options.gates))
    elif options.rules:
        try:
            spec = GateSpec.model_validate(options.rules)
        except ValidationError as exc:
            raise InvalidInputError(f"stage {ctx.name}: invalid gate rules: {exc}") from exc
    else:
        raise InvalidInputError("gate stage needs 'gates' (a YAML file) or inline 'rules'")
    report = check_gates(spec, load_comparison(ctx.path(options.comparison)))
    markdown = report.markdown()
    path = ctx.stage_dir / "gate.md"
    atomic_write_text(path, markdown)
    failed = [c.name for c in report.checks if not c.passed]
    if not report.passed:
        raise GateFailed(f"gates failed: {', '.join(failed)} (see {path})", markdown)
    return {"passed": True, "report": str(path), "checks": len(report.checks)}


KIND = StageKind(Options, run, None, summary=(__doc__ or "").strip().splitlines()[0])
