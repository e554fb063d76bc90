"""Champion vs challenger: paired bootstrap confidence intervals on per-example score differences.

Both models answer the same examples, so we resample example indices (the same indices for both)
and look at the distribution of mean(challenger - champion). A lower CI bound above zero means the
challenger is better with the chosen confidence; gates use that bound for "must not regress".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import LmfError
from lmfoundry.fsutil import atomic_write_text, read_json
from lmfoundry.stats import bootstrap_difference

if TYPE_CHECKING:
    from lmfoundry.eval.evaluate import EvalResult

LATENCY_KEYS = ("ttft_s", "tpot_s", "e2e_s")


def paired_bootstrap(
    champion: Sequence[float],
    challenger: Sequence[float],
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float | int]:
    """Means, their difference (challenger - champion), a percentile CI of it, and win counts.

    The resampling is `lmfoundry.stats.bootstrap_difference`, the project's one bootstrap (the
    core layer's, so `rag` below `eval` uses the same numbers); this adds what a comparison shows."""
    ci = bootstrap_difference(champion, challenger, n_boot, seed, confidence)
    diffs = [b - a for a, b in zip(champion, challenger, strict=True)]
    return {
        "champion": fmean(champion),
        "challenger": fmean(challenger),
        **ci,
        "wins": sum(d > 0 for d in diffs),
        "ties": sum(d == 0 for d in diffs),
        "losses": sum(d < 0 for d in diffs),
    }


def compare_results(
    champion_result: EvalResult,
    challenger_result: EvalResult,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Per-metric paired bootstraps over identical example ids, plus latency and cost differences."""
    ids = _paired_ids(champion_result, challenger_result)
    metrics: dict[str, Any] = {}
    for metric in champion_result.metrics:
        if metric not in challenger_result.metrics:
            continue
        a, b = champion_result.scores(metric), challenger_result.scores(metric)
        metrics[metric] = paired_bootstrap([a[i] for i in ids], [b[i] for i in ids], n_boot, seed, confidence)
    if not metrics:
        raise LmfError("the two results share no metric to compare")
    return {
        "task": champion_result.task,
        "champion_model": champion_result.model,
        "challenger_model": challenger_result.model,
        "n": len(ids),
        "confidence": confidence,
        "n_boot": n_boot,
        "seed": seed,
        "metrics": metrics,
        "outputs": _output_checks(champion_result, challenger_result),
        "prompts": {"champion": champion_result.prompt, "challenger": challenger_result.prompt},
        "latency": _latency_diff(champion_result.latency, challenger_result.latency),
        "cost_per_1m_tokens": _pair(
            champion_result.latency.get("cost_per_1m_tokens"),
            challenger_result.latency.get("cost_per_1m_tokens"),
        ),
    }


def save_comparison(comparison: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(path, json.dumps(comparison, indent=2) + "\n")
    return path


def load_comparison(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    data = read_json(path, f"comparison file not found: {path}")
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise LmfError(f"{path}: not a comparison (no 'metrics' mapping); write one with `lmf eval compare`")
    return data


def _paired_ids(champion: EvalResult, challenger: EvalResult) -> list[str]:
    a_ids = [o.id for o in champion.outputs]
    b_ids = {o.id for o in challenger.outputs}
    if set(a_ids) != b_ids:
        only_a = sorted(set(a_ids) - b_ids)[:5]
        only_b = sorted(b_ids - set(a_ids))[:5]
        raise LmfError(
            "champion and challenger were evaluated on different examples "
            f"(only champion: {only_a}, only challenger: {only_b}); run both on the same task and --limit"
        )
    return a_ids


def _output_checks(champion: EvalResult, challenger: EvalResult) -> dict[str, Any]:
    """Empty, cut-at-start and truncated rates of both sides (gates read the champion's)."""
    a, b = champion.output_checks(), challenger.output_checks()
    return {key: _pair(a[key], b[key]) for key in ("empty_rate", "cut_at_start_rate", "truncated_rate")}


def _latency_diff(champion: dict[str, Any], challenger: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key in LATENCY_KEYS:
        for stat in ("p50", "p95", "p99"):
            result[f"{key}_{stat}"] = _pair(champion[key][stat], challenger[key][stat])
    result["throughput_tokens_per_s"] = _pair(
        champion["throughput_tokens_per_s"], challenger["throughput_tokens_per_s"]
    )
    return result


def _pair(champion: float | None, challenger: float | None) -> dict[str, float | None]:
    diff = None if champion is None or challenger is None else challenger - champion
    return {"champion": champion, "challenger": challenger, "diff": diff}
