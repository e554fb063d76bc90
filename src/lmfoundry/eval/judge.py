"""Model-graded evaluation: rubric scores and pairwise preferences from a judge model.

A judge is anything with `complete(prompt, seed=...) -> str` (`judges.py`); what it is asked and
how its answers are read is in `judge_prompts.py`. Judges are unreliable instruments, so this
module measures them as it uses them:

- output that holds no score/verdict is *counted* (`n_unparseable`) and left out of means
  explicitly, never turned into NaN or a default score;
- pairwise comparisons run in both orders; a verdict that follows the *position* rather than the
  response (A first, A again after swapping) is a contradiction, counted and scored as a tie;
- repeats with different seeds give the spread of the headline number;
- `judge_agreement.agreement` measures the judge against human labels (accuracy, Cohen's kappa).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.eval.judge_format import VERDICT_FORMAT, AnswerFormat, score_format
from lmfoundry.eval.judge_prompts import Rubric, pairwise_prompt, parse_score, parse_verdict, rubric_prompt
from lmfoundry.eval.judges import JudgeBackend, complete_judgment
from lmfoundry.fsutil import read_jsonl


@dataclass(frozen=True)
class JudgeItem:
    """One thing to judge: the task prompt, one or two responses, and an optional reference."""

    id: str
    prompt: str
    response: str
    reference: str = ""
    other: str = ""
    """The second response (pairwise only)."""


def read_outputs(path: str | Path) -> list[dict[str, Any]]:
    """Records of an `outputs.jsonl` written by `lmf eval run` (a run folder also works)."""
    path = Path(path)
    if path.is_dir():
        path = path / "outputs.jsonl"
    records = []
    for line_no, record in read_jsonl(
        path, f"outputs file not found: {path} (write one with `lmf eval run ... --out DIR`)"
    ):
        if not {"id", "input", "output"} <= set(record):
            raise InvalidInputError(f"{path}:{line_no}: an outputs record needs id, input and output")
        records.append(record)
    if not records:
        raise InvalidInputError(f"{path}: no records")
    return records


def rubric_items(records: Sequence[dict[str, Any]]) -> list[JudgeItem]:
    return [JudgeItem(str(r["id"]), r["input"], r["output"], r.get("reference", "")) for r in records]


def pairwise_items(
    records_a: Sequence[dict[str, Any]], records_b: Sequence[dict[str, Any]]
) -> list[JudgeItem]:
    """Pair two runs by example id; runs on different examples are an error, not a partial result."""
    by_id = {str(r["id"]): r for r in records_b}
    ids_a = [str(r["id"]) for r in records_a]
    if set(ids_a) != set(by_id):
        only_a = sorted(set(ids_a) - set(by_id))[:5]
        only_b = sorted(set(by_id) - set(ids_a))[:5]
        raise LmfError(
            f"the two outputs files cover different examples (only first: {only_a}, only second: {only_b})"
        )
    return [
        JudgeItem(i, r["input"], r["output"], r.get("reference", ""), by_id[i]["output"])
        for i, r in zip(ids_a, records_a, strict=True)
    ]


def judge_rubric(
    judge: JudgeBackend, items: Sequence[JudgeItem], rubric: Rubric, seed: int = 0
) -> list[dict[str, Any]]:
    """One judgment per item: the raw judge text and the parsed score (None when unparseable)."""
    answer = score_format(rubric.min_score, rubric.max_score)
    rows = []
    for item in items:
        prompt = rubric_prompt(rubric, item.prompt, item.response, item.reference)
        raw = complete_judgment(judge, prompt, seed=seed, answer=answer)
        rows.append(
            {"id": item.id, "score": parse_score(raw, rubric.min_score, rubric.max_score), "raw": raw}
        )
    return rows


def summarize_rubric(rows: Sequence[dict[str, Any]], rubric: Rubric) -> dict[str, Any]:
    """Mean score over parseable judgments; unparseable ones are counted, never averaged in."""
    scores = [r["score"] for r in rows if r["score"] is not None]
    histogram = {str(s): scores.count(s) for s in range(rubric.min_score, rubric.max_score + 1)}
    mean = sum(scores) / len(scores) if scores else None
    span = rubric.max_score - rubric.min_score
    return {
        "n": len(rows),
        "n_scored": len(scores),
        "n_unparseable": len(rows) - len(scores),
        "mean": mean,
        "mean_normalized": None if mean is None else (mean - rubric.min_score) / span,
        "histogram": histogram,
    }


def combine_orders(first: str | None, swapped: str | None) -> dict[str, Any]:
    """Merge the verdicts of both orders into a model-level outcome.

    `first` judged (A=model a, B=model b); `swapped` judged (A=model b, B=model a). Each order
    gives model b a point (1, 0.5 tie, 0); the outcome is their mean, so a judge that always
    picks the same *position* gives 0.5 -- a tie -- and position bias cancels. Such a pair is
    flagged `contradiction`. None when either order was unparseable.
    """
    if first is None or swapped is None:
        return {"outcome": None, "b_score": None, "contradiction": False}
    points_first = {"a": 0.0, "tie": 0.5, "b": 1.0}[first]
    points_swapped = {"a": 1.0, "tie": 0.5, "b": 0.0}[swapped]  # position A now holds model b
    b_score = (points_first + points_swapped) / 2
    outcome = "b" if b_score > 0.5 else "a" if b_score < 0.5 else "tie"
    contradiction = first == swapped and first != "tie"
    return {"outcome": outcome, "b_score": b_score, "contradiction": contradiction}


def judge_pairwise(judge: JudgeBackend, items: Sequence[JudgeItem], seed: int = 0) -> list[dict[str, Any]]:
    """Judge each pair in both orders; `a` is `item.response`, `b` is `item.other`."""
    rows = []
    for item in items:
        prompts = (
            pairwise_prompt(item.prompt, item.response, item.other),
            pairwise_prompt(item.prompt, item.other, item.response),
        )
        raw_first, raw_swapped = (
            complete_judgment(judge, p, seed=seed, answer=VERDICT_FORMAT) for p in prompts
        )
        first, swapped = parse_verdict(raw_first), parse_verdict(raw_swapped)
        rows.append(
            {
                "id": item.id,
                "verdict_first": first,
                "verdict_swapped": swapped,
                **combine_orders(first, swapped),
                "raw_first": raw_first,
                "raw_swapped": raw_swapped,
            }
        )
    return rows


def summarize_pairwise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Win rates over pairs whose two verdicts both parsed, contradiction and position-bias rates."""
    scored = [r for r in rows if r["outcome"] is not None]
    verdicts = [v for r in rows for v in (r["verdict_first"], r["verdict_swapped"]) if v is not None]
    decisive = [v for v in verdicts if v != "tie"]
    n = len(scored)
    contradictions = sum(r["contradiction"] for r in scored)
    return {
        "n": len(rows),
        "n_scored": n,
        "n_unparseable": len(rows) - n,
        "n_unparseable_verdicts": 2 * len(rows) - len(verdicts),
        "wins_a": sum(r["outcome"] == "a" for r in scored),
        "wins_b": sum(r["outcome"] == "b" for r in scored),
        "ties": sum(r["outcome"] == "tie" for r in scored),
        "b_preference": mean_of([r["b_score"] for r in scored]),
        "win_rate_b": None if not n else sum(r["outcome"] == "b" for r in scored) / n,
        "n_contradictions": contradictions,
        "contradiction_rate": None if not n else contradictions / n,
        "first_position_rate": None if not decisive else decisive.count("a") / len(decisive),
    }


def repeat_stats(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, sample standard deviation, min and max of per-repeat values (None ones are skipped)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    mean = sum(present) / len(present)
    std = math.sqrt(sum((v - mean) ** 2 for v in present) / (len(present) - 1)) if len(present) > 1 else 0.0
    return {"n": len(present), "mean": mean, "std": std, "min": min(present), "max": max(present)}


def run_judge(
    judge: JudgeBackend,
    items: Sequence[JudgeItem],
    *,
    rubric: Rubric | None = None,
    pairwise: bool = False,
    repeats: int = 1,
    seed: int = 0,
    on_item: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Judge `items` `repeats` times (seeds seed, seed+1, ...) and summarize each repeat and their spread.

    The headline number is the mean rubric score, or model b's preference (0..1) when pairwise.
    """
    if repeats < 1:
        raise InvalidInputError(f"--repeats must be >= 1, got {repeats}")
    if not items:
        raise InvalidInputError("nothing to judge")
    rubric = rubric or Rubric()
    runs: list[dict[str, Any]] = []
    for offset in range(repeats):
        run_seed = seed + offset
        if pairwise:
            rows = judge_pairwise(_Counting(judge, on_item), items, run_seed)
            summary = summarize_pairwise(rows)
        else:
            rows = judge_rubric(_Counting(judge, on_item), items, rubric, run_seed)
            summary = summarize_rubric(rows, rubric)
        runs.append({"seed": run_seed, "summary": summary, "judgments": rows})
    headline = "b_preference" if pairwise else "mean"
    return {
        "mode": "pairwise" if pairwise else "rubric",
        "rubric": None
        if pairwise
        else {"name": rubric.name, "min": rubric.min_score, "max": rubric.max_score},
        "repeats": repeats,
        "headline": headline,
        "summary": runs[0]["summary"] if repeats == 1 else _pooled(runs),
        "variance": repeat_stats([r["summary"][headline] for r in runs]),
        "n_unparseable": sum(r["summary"]["n_unparseable"] for r in runs),
        "runs": runs,
    }


@dataclass
class _Counting:
    """Calls `on_item` after each judge call (progress bars), passing everything else through."""

    judge: JudgeBackend
    on_item: Callable[[], None] | None

    @property
    def structured(self) -> bool:
        return bool(getattr(self.judge, "structured", False))

    def complete(self, prompt: str, *, seed: int, answer: AnswerFormat | None = None) -> str:
        if answer is not None:
            text = complete_judgment(self.judge, prompt, seed=seed, answer=answer)
        else:
            text = self.judge.complete(prompt, seed=seed)
        if self.on_item:
            self.on_item()
        return text


def _pooled(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Numeric summary fields averaged over repeats; counts summed."""
    pooled: dict[str, Any] = {}
    for key, first in runs[0]["summary"].items():
        values = [r["summary"][key] for r in runs]
        if key.startswith("n") or key in ("wins_a", "wins_b", "ties"):
            pooled[key] = sum(values)
        elif isinstance(first, dict):
            pooled[key] = {k: sum(v[k] for v in values) for k in first}
        else:
            pooled[key] = mean_of(values)
    return pooled


def mean_of(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None
