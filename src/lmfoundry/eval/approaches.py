"""Prompt, retrieve or fine-tune? One task answered every way, side by side, on identical examples.

The approaches: the base model zero-shot, few-shot with random demonstrations, few-shot with the
demonstrations most similar to the input (retrieved from the train split), and each given
fine-tuning run through its training template. Every approach is scored on the same test
examples; each is compared with zero-shot by a paired bootstrap on the task's primary metric,
and the table shows what each costs per request (prompt tokens, latency) and up front (training
time and tokens, read from the run's summary.json).

`approaches.json` holds the table; each approach's `results.json` + `outputs.jsonl` sit in a
folder of the same name, so `lmf eval report` works on any of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.eval.compare import paired_bootstrap
from lmfoundry.eval.evaluate import EvalResult, run_task
from lmfoundry.eval.prompting import DEFAULT_SHOTS, AskPlan, plan_for
from lmfoundry.eval.subjects import load_subject
from lmfoundry.eval.tasks import Task
from lmfoundry.finetune.train.stage import SUMMARY_FILE
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.types import SamplingParams

APPROACHES_FILE = "approaches.json"


@dataclass
class Approach:
    name: str
    model: Any
    plan: AskPlan
    run: str | None = None


def base_approaches(model: Any, task: Task, params: SamplingParams, shots: int) -> list[Approach]:
    """Zero-shot, and (with a train split to draw from) random and similar few-shot prompts."""
    room = params.max_new_tokens
    found = [Approach("zero-shot", model, plan_for(model, task, shots=0, max_new_tokens=room))]
    if shots and task.split("train"):
        for selection in ("random", "similar"):
            plan = plan_for(model, task, shots=shots, selection=selection, max_new_tokens=room)
            found.append(Approach(f"{shots}-shot {selection}", model, plan))
    return found


def run_approaches(
    model_name: str,
    task: Task,
    out_dir: Path,
    *,
    runs: list[str] | None = None,
    shots: int = DEFAULT_SHOTS,
    limit: int | None = None,
    params: SamplingParams | None = None,
    progress: bool = True,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Evaluate every approach (see the module docstring) and write `approaches.json`."""
    params = params or task.params
    base = load_subject(model_name)
    results: dict[str, EvalResult] = {}
    for approach in base_approaches(base.model, task, params, shots):
        results[approach.name] = _evaluate(approach, task, out_dir, limit, params, progress)
    training: dict[str, dict[str, Any] | None] = {}
    for run in runs or []:
        subject = load_subject(run)
        plan = plan_for(subject.model, task, run=subject.run, max_new_tokens=params.max_new_tokens)
        name = f"fine-tuned {Path(run).resolve().name}"
        results[name] = _evaluate(
            Approach(name, subject.model, plan, run), task, out_dir, limit, params, progress
        )
        training[name] = training_cost(run)
    table = summarize(results, task.primary_metric, training, confidence)
    data = {"task": task.name, "model": model_name, "metric": task.primary_metric, "n": table[0]["n"],
            "confidence": confidence, "approaches": table}  # fmt: skip
    atomic_write_text(out_dir / APPROACHES_FILE, json.dumps(data, indent=2) + "\n")
    return data


def _evaluate(
    approach: Approach, task: Task, out_dir: Path, limit: int | None, params: SamplingParams, progress: bool
) -> EvalResult:
    folder = out_dir / approach.name.replace(" ", "_")
    return run_task(approach.model, task, limit, folder, progress=progress, params=params, plan=approach.plan)


def summarize(
    results: dict[str, EvalResult], metric: str, training: dict[str, dict[str, Any] | None], confidence: float
) -> list[dict[str, Any]]:
    """One row per approach: the metric with its paired CI against zero-shot, checks and costs."""
    baseline = results["zero-shot"].scores(metric)
    ids = list(baseline)
    rows = []
    for name, result in results.items():
        scores = result.scores(metric)
        versus = paired_bootstrap([baseline[i] for i in ids], [scores[i] for i in ids], confidence=confidence)
        checks = result.output_checks()
        prompt_tokens = [o.latency["prompt_tokens"] for o in result.outputs]
        rows.append({
            "approach": name,
            "n": len(ids),
            "metrics": result.aggregates,
            "score": versus["challenger"],
            "vs_zero_shot": {k: versus[k] for k in ("diff", "ci_low", "ci_high")},
            "empty_rate": checks["empty_rate"],
            "truncated_rate": checks["truncated_rate"],
            "prompt": result.prompt,
            "prompt_tokens_mean": sum(prompt_tokens) / len(prompt_tokens) if prompt_tokens else 0.0,
            "shots_mean": sum(o.shots for o in result.outputs) / max(len(result.outputs), 1),
            "latency_p50_s": result.latency["e2e_s"]["p50"],
            "latency_p95_s": result.latency["e2e_s"]["p95"],
            "training": training.get(name),
        })  # fmt: skip
    return rows


def training_cost(run: str) -> dict[str, Any] | None:
    """What a run cost to train, from its summary.json (None when there is none)."""
    for folder in (Path(run), Path(run).parent):
        path = folder / SUMMARY_FILE
        if path.is_file():
            summary = json.loads(path.read_text(encoding="utf-8"))
            return {
                k: summary.get(k)
                for k in ("train_seconds", "wall_seconds", "tokens", "steps", "peak_rss_bytes")
            }
    return None
