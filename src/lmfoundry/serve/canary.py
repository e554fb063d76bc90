"""Live checks of a canary variant over a sliding window of its last responses.

Pure bookkeeping (no HTTP, no clock): the rollout feeds each finished response in and asks for a
verdict. A check only speaks once `min_samples` responses are in the window, so one slow first
request cannot roll a canary back.

The judge check needs a judge: `f(question, answer) -> score`, given to `create_app(canary_judge=)`
or named on the command line (`lmf serve --canary-judge NAME`: a `canary_judge` plugin or a
`module:function` path, loaded by `load_canary_judge`).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from lmfoundry.errors import InvalidInputError
from lmfoundry.plugins import load_hook
from lmfoundry.serve.rollout_spec import CanarySpec, RolloutSpec

CanaryJudge = Callable[[str, str], float]
"""`judge(question, answer) -> score`; the canary rolls back when the mean falls below its floor."""


@dataclass(frozen=True)
class Outcome:
    error: bool
    seconds: float
    empty: bool


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile (the smallest value at or above 95% of the sample)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def load_canary_judge(name: str | None, spec: RolloutSpec | None = None) -> CanaryJudge | None:
    """The judge named by `--canary-judge` (None when unset); an error when `spec`'s canary checks
    a judge score and no judge is named, so the check cannot be silently skipped."""
    judge = load_hook("canary_judge", name, "canary judge") if name else None
    check_judge(spec, judge)
    return judge


def check_judge(spec: RolloutSpec | None, judge: CanaryJudge | None) -> None:
    """Refuse a rollout whose canary has `min_judge_score` when the server has no judge."""
    canary = spec.canary if spec is not None else None
    if judge is None and canary is not None and canary.min_judge_score is not None:
        raise InvalidInputError(
            f"canary {canary.variant!r} sets min_judge_score but the server has no judge "
            "(start it with --canary-judge NAME: a canary_judge plugin or module:function)"
        )


class CanaryMonitor:
    """Thread-safe window of outcomes (and judge scores) with the checks of a `CanarySpec`."""

    def __init__(self, spec: CanarySpec) -> None:
        self.spec = spec
        self._outcomes: deque[Outcome] = deque(maxlen=spec.window)
        self._scores: deque[float] = deque(maxlen=spec.window)
        self._lock = threading.Lock()

    def add(self, outcome: Outcome) -> str | None:
        """Record one response; return the failed check's description, or None."""
        with self._lock:
            self._outcomes.append(outcome)
            return self._verdict()

    def add_judge_score(self, score: float) -> str | None:
        with self._lock:
            self._scores.append(score)
            return self._verdict()

    def summary(self) -> dict[str, float | int | None]:
        with self._lock:
            outcomes = list(self._outcomes)
            n = len(outcomes)
            return {
                "samples": n,
                "error_rate": sum(o.error for o in outcomes) / n if n else None,
                "empty_rate": sum(o.empty for o in outcomes) / n if n else None,
                "p95_s": p95([o.seconds for o in outcomes]) if n else None,
                "judge_samples": len(self._scores),
                "judge_mean": sum(self._scores) / len(self._scores) if self._scores else None,
            }

    def _verdict(self) -> str | None:
        spec, outcomes = self.spec, list(self._outcomes)
        if len(outcomes) >= spec.min_samples:
            n = len(outcomes)
            error_rate = sum(o.error for o in outcomes) / n
            if spec.max_error_rate is not None and error_rate > spec.max_error_rate:
                return f"error_rate {error_rate:.3f} > {spec.max_error_rate} over {n} responses"
            latency = p95([o.seconds for o in outcomes])
            if spec.max_p95_s is not None and latency > spec.max_p95_s:
                return f"p95 latency {latency:.3f}s > {spec.max_p95_s}s over {n} responses"
            empty_rate = sum(o.empty for o in outcomes) / n
            if spec.max_empty_rate is not None and empty_rate > spec.max_empty_rate:
                return f"empty_rate {empty_rate:.3f} > {spec.max_empty_rate} over {n} responses"
        scores = list(self._scores)
        if spec.min_judge_score is not None and len(scores) >= spec.min_judge_samples:
            mean = sum(scores) / len(scores)
            if mean < spec.min_judge_score:
                return f"judge score {mean:.3f} < {spec.min_judge_score} over {len(scores)} samples"
        return None
