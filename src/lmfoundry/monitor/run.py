"""One call from capture files to a written drift report: what `lmf monitor` and the pipeline's
`monitor` stage run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmfoundry.embed.sentence import load_embedder
from lmfoundry.eval.judges import make_judge
from lmfoundry.monitor.drift import MonitorResult, compare_windows, load_thresholds
from lmfoundry.monitor.report import write_report
from lmfoundry.monitor.window import load_window, parse_range
from lmfoundry.types import SamplingParams

DRIFT_EXIT_CODE = 3
"""`lmf monitor`'s exit code when a gate flags drift (1 stays "error", 2 "bad arguments")."""


@dataclass
class MonitorRequest:
    reference: str
    current: str
    reference_range: str | None = None
    """START..END of the reference window (ISO 8601 times or durations before now such as 30d)."""
    current_range: str | None = None
    thresholds: str | None = None
    """A thresholds YAML (see configs/monitor/thresholds.yaml); the defaults otherwise."""
    out: str = "monitor-report"
    judge: str | None = None
    """A judge spec (as `lmf eval judge --judge`) to score a sample of replies; off when None."""
    judge_sample: int = 20
    embedder: str | None = None
    permutations: int = 1000
    seed: int = 0


def run_monitor(
    request: MonitorRequest, progress: Callable[[str], None] | None = None
) -> tuple[MonitorResult, dict[str, Path]]:
    """Load both windows, run every check, write report.html and summary.json under `request.out`."""
    thresholds = load_thresholds(request.thresholds)
    reference = load_window(request.reference, *parse_range(request.reference_range))
    current = load_window(request.current, *parse_range(request.current_range))
    judge = None
    if request.judge:
        judge = make_judge(request.judge, SamplingParams(temperature=0.0, max_new_tokens=128))
    result = compare_windows(
        reference,
        current,
        load_embedder(request.embedder),
        thresholds=thresholds,
        judge=judge,
        judge_sample=request.judge_sample,
        n_permutations=request.permutations,
        seed=request.seed,
        progress=progress,
    )
    return result, write_report(result, request.out)
