"""Compare a reference window of traffic with a current one and say what drifted.

Each check is a two-sample test (p-value) plus an effect size, and flags drift only when both
agree: p < `alpha` (the difference is not noise) *and* the effect passes its threshold (the
difference is big enough to matter). A check whose data is missing (no latency in a JSONL
capture, no judge given) is reported as skipped, never as passed silently.

Input drift: the prompts' embedding distribution (MMD with a permutation p-value), prompt length,
language mix, and requests unlike any seen before (k-means on half the reference, the other half
calibrates the "far from every centroid" radius at its 95th percentile, so about 5% of same-mix
requests land outside it; the binomial tail says how surprising the current share is).
Output drift: reply length, empty and refusal rates (two-proportion tests), optionally a judge's
rubric score on a sample. Operations: latency p95 and generated tokens per second.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lmfoundry.config import load_yaml
from lmfoundry.embed.sentence import embed_texts
from lmfoundry.errors import InvalidInputError
from lmfoundry.eval.judge import JudgeItem, judge_rubric
from lmfoundry.eval.judge_prompts import Rubric
from lmfoundry.eval.refusal import refuses
from lmfoundry.monitor import stats
from lmfoundry.monitor.language import guess_language
from lmfoundry.monitor.window import Exchange, Window

if TYPE_CHECKING:
    import numpy as np

    from lmfoundry.embed.sentence import Embedder
    from lmfoundry.eval.judges import JudgeBackend

NOVEL_QUANTILE = 0.95
"""Share of reference requests inside the novelty radius (so ~5% of same-mix requests are 'novel')."""
MIN_WINDOW = 10


class Thresholds(BaseModel):
    """When a check flags drift (a `--thresholds` YAML; a field set to null turns that gate off)."""

    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(default=0.01, gt=0, lt=1)
    """Significance level every check's p-value is held to."""
    embedding: bool = True
    """Gate on the prompts' embedding distribution (MMD)."""
    prompt_length_change: float | None = Field(default=0.5, ge=0)
    """Relative change of the median prompt length (characters)."""
    language_shift: float | None = Field(default=0.2, ge=0, le=1)
    """Total variation distance between the language mixes."""
    novel_share: float | None = Field(default=0.25, ge=0, le=1)
    """Share of current requests far from every reference cluster."""
    output_length_change: float | None = Field(default=0.5, ge=0)
    """Relative change of the median reply length (characters)."""
    empty_rate_increase: float | None = Field(default=0.05, ge=0, le=1)
    refusal_rate_increase: float | None = Field(default=0.05, ge=0, le=1)
    latency_p95_ratio: float | None = Field(default=1.5, gt=0)
    """Current p95 latency over the reference one."""
    throughput_ratio: float | None = Field(default=0.67, gt=0)
    """Current median generated tokens/s over the reference one; flags when at or below this."""
    judge_score_drop: float | None = Field(default=0.5, ge=0)
    """Drop of the judge's mean rubric score (1-5) on the sampled replies."""


def load_thresholds(path: str | Path | None) -> Thresholds:
    if path is None:
        return Thresholds()
    try:
        return Thresholds.model_validate(load_yaml(path) or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"{path}: invalid monitor thresholds: {problems}") from exc


@dataclass
class Check:
    name: str
    group: str
    """input, output or operations."""
    reference: float | None
    current: float | None
    p_value: float | None
    effect: float | None
    rule: str
    flagged: bool
    note: str = ""


@dataclass
class MonitorResult:
    reference: Window
    current: Window
    checks: list[Check]
    thresholds: Thresholds
    novel_examples: list[str] = field(default_factory=list)
    languages: dict[str, dict[str, int]] = field(default_factory=dict)
    series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    """Per-request values for the report's histograms: name -> (reference, current)."""
    projection: tuple[Any, Any] | None = None
    """2-D PCA coordinates of the sampled prompt embeddings (reference, current)."""

    @property
    def drifted(self) -> bool:
        return any(c.flagged for c in self.checks)

    def summary(self) -> dict[str, Any]:
        """The JSON summary: windows, every check with its p-value, and the verdict."""
        return {
            "drifted": self.drifted,
            "flagged": [c.name for c in self.checks if c.flagged],
            "reference": self.reference.describe(),
            "current": self.current.describe(),
            "thresholds": self.thresholds.model_dump(),
            "checks": [asdict(c) for c in self.checks],
            "languages": self.languages,
            "novel_examples": self.novel_examples,
        }


@dataclass
class _Options:
    thresholds: Thresholds
    n_permutations: int
    seed: int
    sample_size: int


def compare_windows(
    reference: Window,
    current: Window,
    embedder: Embedder,
    *,
    thresholds: Thresholds | None = None,
    judge: JudgeBackend | None = None,
    judge_sample: int = 20,
    n_permutations: int = 1000,
    seed: int = 0,
    sample_size: int = 300,
    progress: Callable[[str], None] | None = None,
) -> MonitorResult:
    """Run every drift check of `current` against `reference`. `sample_size` caps the requests per
    window whose embeddings are compared (the kernel matrix grows with its square)."""
    for window in (reference, current):
        if len(window.exchanges) < MIN_WINDOW:
            raise InvalidInputError(
                f"{window.source}: {len(window.exchanges)} exchanges; drift checks need at least {MIN_WINDOW}"
            )
    options = _Options(thresholds or Thresholds(), n_permutations, seed, sample_size)
    note = progress or (lambda _step: None)
    result = MonitorResult(reference, current, [], options.thresholds)
    note("embedding prompts")
    _input_checks(result, embedder, options)
    note("comparing replies")
    _output_checks(result, options)
    if judge is not None:
        note("judging a sample of replies")
        result.checks.append(_judge_check(reference, current, judge, judge_sample, options))
    else:
        result.checks.append(_skipped("judge_quality", "output", "no judge given (--judge)"))
    result.checks += _operations_checks(result, options)
    return result


def _input_checks(result: MonitorResult, embedder: Embedder, options: _Options) -> None:
    t = options.thresholds
    ref, cur = _sample(result.reference.exchanges, options), _sample(result.current.exchanges, options)
    emb_ref = embed_texts(embedder, [e.prompt for e in ref], progress=False)
    emb_cur = embed_texts(embedder, [e.prompt for e in cur], progress=False)
    mmd2, p = stats.mmd_test(emb_ref, emb_cur, options.n_permutations, options.seed)
    result.checks.append(
        Check(
            "input_embedding",
            "input",
            None,
            None,
            p,
            mmd2,
            f"p < {t.alpha:g}" if t.embedding else "off",
            t.embedding and p < t.alpha,
            f"MMD² of {len(ref)} vs {len(cur)} prompt embeddings",
        )  # fmt: skip
    )
    result.projection = _pca_2d(emb_ref, emb_cur)
    prompts = _lengths(result.reference.exchanges, "prompt"), _lengths(result.current.exchanges, "prompt")
    result.series["prompt length (chars)"] = prompts
    result.checks.append(_length_check("prompt_length", "input", *prompts, t.prompt_length_change, options))
    languages = (
        [guess_language(e.prompt) for e in result.reference.exchanges],
        [guess_language(e.prompt) for e in result.current.exchanges],
    )
    result.languages = {
        "reference": _counts(languages[0]),
        "current": _counts(languages[1]),
    }
    tv, p = stats.category_test(*languages, options.n_permutations, options.seed)
    result.checks.append(_gate("language_mix", "input", None, None, p, tv, t.language_shift, options,
                               "total variation distance of the language shares"))  # fmt: skip
    result.checks.append(_novelty_check(result, emb_ref, emb_cur, [e.prompt for e in cur], options))


def _novelty_check(
    result: MonitorResult, emb_ref: np.ndarray, emb_cur: np.ndarray, prompts: list[str], options: _Options
) -> Check:
    import numpy as np

    rng = np.random.default_rng(options.seed)
    order = rng.permutation(len(emb_ref))
    fit, calibrate = emb_ref[order[: len(order) // 2]], emb_ref[order[len(order) // 2 :]]
    k = max(1, min(8, len(fit) // 5))
    centroids = stats.kmeans(fit.astype(np.float64), k, options.seed)
    radius = float(np.quantile(stats.nearest_distance(calibrate, centroids)[0], NOVEL_QUANTILE))
    distance = stats.nearest_distance(emb_cur, centroids)[0]
    novel = distance > radius
    share = float(novel.mean())
    p = stats.binomial_tail(int(novel.sum()), len(novel), 1 - NOVEL_QUANTILE)
    farthest = np.argsort(-distance)[: min(5, int(novel.sum()))]
    result.novel_examples = [prompts[i] for i in farthest]
    note = f"{int(novel.sum())} of {len(novel)} current prompts outside {k} reference clusters"
    return _gate("novel_requests", "input", 1 - NOVEL_QUANTILE, share, p, share, options.thresholds.novel_share,
                 options, note, absolute=True)  # fmt: skip


def _output_checks(result: MonitorResult, options: _Options) -> None:
    t = options.thresholds
    ref, cur = result.reference.exchanges, result.current.exchanges
    outputs = _lengths(ref, "output"), _lengths(cur, "output")
    result.series["reply length (chars)"] = outputs
    result.checks.append(_length_check("output_length", "output", *outputs, t.output_length_change, options))
    for name, predicate, limit in (
        ("empty_rate", lambda text: not text.strip(), t.empty_rate_increase),
        ("refusal_rate", refuses, t.refusal_rate_increase),
    ):
        x_ref, x_cur = (
            sum(map(predicate, (e.output for e in ref))),
            sum(map(predicate, (e.output for e in cur))),
        )
        rate_ref, rate_cur = x_ref / len(ref), x_cur / len(cur)
        p = stats.two_proportion_test(x_ref, len(ref), x_cur, len(cur))
        note = f"{x_ref} of {len(ref)} vs {x_cur} of {len(cur)}"
        result.checks.append(_gate(name, "output", rate_ref, rate_cur, p, rate_cur - rate_ref, limit, options,
                                   note, absolute=True))  # fmt: skip


def _judge_check(
    reference: Window, current: Window, judge: JudgeBackend, sample: int, options: _Options
) -> Check:
    import numpy as np

    rng = np.random.default_rng(options.seed)
    scores = []
    for window in (reference, current):
        picked = rng.choice(len(window.exchanges), size=min(sample, len(window.exchanges)), replace=False)
        items = [JudgeItem(e.id, e.prompt, e.output) for e in (window.exchanges[i] for i in picked)]
        rows = judge_rubric(judge, items, Rubric(), options.seed)
        scores.append([float(r["score"]) for r in rows if r["score"] is not None])
    if min(map(len, scores)) < 2:
        return _skipped("judge_quality", "output", "the judge's replies did not parse (fewer than 2 scores)")
    mean_ref, mean_cur = statistics.fmean(scores[0]), statistics.fmean(scores[1])
    _, p = stats.ks_test(scores[0], scores[1], options.n_permutations, options.seed)
    limit = options.thresholds.judge_score_drop
    return Check("judge_quality", "output", mean_ref, mean_cur, p, mean_cur - mean_ref,
                 "off" if limit is None else f"p < {options.thresholds.alpha:g} and drop >= {limit:g}",
                 limit is not None and p < options.thresholds.alpha and mean_ref - mean_cur >= limit,
                 f"mean rubric score (1-5) of {len(scores[0])} vs {len(scores[1])} sampled replies")  # fmt: skip


def _operations_checks(result: MonitorResult, options: _Options) -> list[Check]:
    t = options.thresholds
    ref, cur = result.reference.exchanges, result.current.exchanges
    latency = _present([e.latency_s for e in ref]), _present([e.latency_s for e in cur])
    if min(map(len, latency)) < 2:
        return [
            _skipped("latency_p95", "operations", "no latency in the capture"),
            _skipped("throughput", "operations", "no latency in the capture"),
        ]
    result.series["latency (s)"] = latency
    p95_ref, p95_cur = _quantile(latency[0], 0.95), _quantile(latency[1], 0.95)
    _, p = stats.ks_test(*latency, options.n_permutations, options.seed)
    ratio = p95_cur / p95_ref if p95_ref > 0 else None
    checks = [
        _ratio_check("latency_p95", p95_ref, p95_cur, p, ratio, t.latency_p95_ratio, options, above=True)
    ]
    speed = _tokens_per_s(ref), _tokens_per_s(cur)
    if min(map(len, speed)) < 2:
        return [*checks, _skipped("throughput", "operations", "no token counts with a non-zero latency")]
    result.series["tokens/s per request"] = speed
    median_ref, median_cur = statistics.median(speed[0]), statistics.median(speed[1])
    _, p = stats.ks_test(*speed, options.n_permutations, options.seed)
    ratio = median_cur / median_ref if median_ref > 0 else None
    return [
        *checks,
        _ratio_check(
            "throughput", median_ref, median_cur, p, ratio, t.throughput_ratio, options, above=False
        ),
    ]


def _ratio_check(
    name: str, ref: float, cur: float, p: float, ratio: float | None, limit: float | None, options: _Options,
    *, above: bool,
) -> Check:  # fmt: skip
    alpha = options.thresholds.alpha
    if limit is None or ratio is None:
        return Check(name, "operations", ref, cur, p, ratio, "off", False)
    beyond = ratio >= limit if above else ratio <= limit
    rule = f"p < {alpha:g} and ratio {'>=' if above else '<='} {limit:g}"
    return Check(name, "operations", ref, cur, p, ratio, rule, p < alpha and beyond)


def _length_check(
    name: str, group: str, ref: list[float], cur: list[float], limit: float | None, options: _Options
) -> Check:
    median_ref, median_cur = statistics.median(ref), statistics.median(cur)
    _, p = stats.ks_test(ref, cur, options.n_permutations, options.seed)
    change = (median_cur - median_ref) / max(median_ref, 1.0)
    return _gate(name, group, median_ref, median_cur, p, change, limit, options,
                 "median characters; p from a KS test")  # fmt: skip


def _gate(
    name: str, group: str, ref: float | None, cur: float | None, p: float, effect: float,
    limit: float | None, options: _Options, note: str = "", *, absolute: bool = False,
) -> Check:  # fmt: skip
    """Flag when p < alpha and the effect reaches `limit` (|effect| unless `absolute`: then only an
    increase counts, as for empty rates)."""
    alpha = options.thresholds.alpha
    if limit is None:
        return Check(name, group, ref, cur, p, effect, "off", False, note)
    size = effect if absolute else abs(effect)
    rule = f"p < {alpha:g} and {'increase' if absolute else '|change|'} >= {limit:g}"
    return Check(name, group, ref, cur, p, effect, rule, p < alpha and size >= limit, note)


def _skipped(name: str, group: str, why: str) -> Check:
    return Check(name, group, None, None, None, None, "skipped", False, why)


def _sample(exchanges: list[Exchange], options: _Options) -> list[Exchange]:
    if len(exchanges) <= options.sample_size:
        return exchanges
    import numpy as np

    picked = np.random.default_rng(options.seed).choice(len(exchanges), options.sample_size, replace=False)
    return [exchanges[i] for i in sorted(picked)]


def _lengths(exchanges: Sequence[Exchange], attribute: str) -> list[float]:
    return [float(len(getattr(e, attribute))) for e in exchanges]


def _present(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _tokens_per_s(exchanges: Sequence[Exchange]) -> list[float]:
    return [
        e.completion_tokens / e.latency_s
        for e in exchanges
        if e.completion_tokens is not None and e.latency_s is not None and e.latency_s > 0
    ]


def _quantile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.quantile(np.asarray(values, dtype=np.float64), q))


def _counts(labels: Sequence[str]) -> dict[str, int]:
    return dict(Counter(labels).most_common())


def _pca_2d(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    pooled = np.vstack([a, b]).astype(np.float64)
    centered = pooled - pooled.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    coords = centered @ vt[:2].T
    return coords[: len(a)], coords[len(a) :]
