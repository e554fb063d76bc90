"""How far a judge agrees with humans: accuracy and Cohen's kappa on labelled examples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.eval.judge import JudgeItem, judge_pairwise, judge_rubric, mean_of
from lmfoundry.eval.judge_prompts import VERDICTS, Rubric
from lmfoundry.eval.judges import JudgeBackend
from lmfoundry.fsutil import read_jsonl


def cohens_kappa(labels_x: Sequence[Any], labels_y: Sequence[Any]) -> float | None:
    """Cohen's kappa of two raters; None (not NaN) when chance agreement is 1 and kappa is undefined."""
    if len(labels_x) != len(labels_y):
        raise InvalidInputError("kappa needs two equally long label lists")
    n = len(labels_x)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(labels_x, labels_y, strict=True)) / n
    categories = set(labels_x) | set(labels_y)
    expected = sum((list(labels_x).count(c) / n) * (list(labels_y).count(c) / n) for c in categories)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def read_labels(path: str | Path) -> tuple[str, list[dict[str, Any]]]:
    """Human labels: pairwise `{prompt, response_a, response_b, human: a|b|tie}` or rubric
    `{prompt, response, human_score}` records (one kind per file). Returns (kind, records)."""
    path = Path(path)
    records = []
    kinds = set()
    for line_no, record in read_jsonl(path, f"labels file not found: {path}"):
        kinds.add(_label_kind(record, path, line_no))
        records.append(record)
    if not records:
        raise InvalidInputError(f"{path}: no labels")
    if len(kinds) > 1:
        raise InvalidInputError(f"{path}: mixes pairwise and rubric labels; use one kind per file")
    return kinds.pop(), records


def _label_kind(record: Any, path: Path, line_no: int) -> str:
    where = f"{path}:{line_no}"
    if isinstance(record, dict) and {"prompt", "response_a", "response_b", "human"} <= set(record):
        if str(record["human"]).lower() not in VERDICTS:
            raise InvalidInputError(f"{where}: human must be 'a', 'b' or 'tie', got {record['human']!r}")
        return "pairwise"
    if isinstance(record, dict) and {"prompt", "response", "human_score"} <= set(record):
        if not isinstance(record["human_score"], int | float) or isinstance(record["human_score"], bool):
            raise InvalidInputError(f"{where}: human_score must be a number")
        return "rubric"
    raise InvalidInputError(
        f"{where}: a label needs {{prompt, response_a, response_b, human}} or {{prompt, response, human_score}}"
    )


def agreement(
    judge: JudgeBackend,
    kind: str,
    records: Sequence[dict[str, Any]],
    *,
    rubric: Rubric | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Judge the labelled examples and compare with the humans: accuracy, Cohen's kappa, counts.

    Pairwise labels are compared with the both-orders outcome; rubric labels with the parsed
    score (plus mean absolute error and within-one accuracy). Unparseable judgments are counted
    and excluded.
    """
    ids = [str(r.get("id", i)) for i, r in enumerate(records)]
    if kind == "pairwise":
        items = [
            JudgeItem(i, r["prompt"], r["response_a"], other=r["response_b"])
            for i, r in zip(ids, records, strict=True)
        ]
        rows = judge_pairwise(judge, items, seed)
        judged = [row["outcome"] for row in rows]
        human = [str(r["human"]).lower() for r in records]
        extra: dict[str, Any] = {"contradictions": sum(row["contradiction"] for row in rows)}
    else:
        rubric = rubric or Rubric()
        items = [
            JudgeItem(i, r["prompt"], r["response"], r.get("reference", ""))
            for i, r in zip(ids, records, strict=True)
        ]
        rows = judge_rubric(judge, items, rubric, seed)
        judged = [row["score"] for row in rows]
        human = [r["human_score"] for r in records]
        pairs = [(j, h) for j, h in zip(judged, human, strict=True) if j is not None]
        extra = {
            "mae": mean_of([abs(j - h) for j, h in pairs]),
            "within_one": mean_of([float(abs(j - h) <= 1) for j, h in pairs]),
        }
    kept = [(j, h) for j, h in zip(judged, human, strict=True) if j is not None]
    return {
        "kind": kind,
        "n": len(records),
        "n_scored": len(kept),
        "n_unparseable": len(records) - len(kept),
        "accuracy": mean_of([float(j == h) for j, h in kept]),
        "kappa": cohens_kappa([j for j, _ in kept], [h for _, h in kept]),
        **extra,
        "judgments": rows,
    }
