"""The strongest baseline: a model used as it comes, at its best prompt, chosen on validation data.

A fine-tune is only as impressive as what it beats. `best_prompt` evaluates the base model on the
task's validation split (never the test split the comparison scores) with the zero-shot prompt
and a few-shot one (demonstrations chosen by similarity from the train split), and keeps the
better by the task's primary metric. The report says which prompt won, by how much, and each
candidate's empty rate; a task without a validation split keeps the zero-shot prompt and says so.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lmfoundry.eval.evaluate import run_task
from lmfoundry.eval.prompting import DEFAULT_SHOTS, AskPlan, plan_for
from lmfoundry.eval.tasks import Task
from lmfoundry.types import SamplingParams

DEFAULT_SEARCH_LIMIT = 20
"""Validation examples each candidate prompt is scored on."""


def candidate_plans(
    model: Any, task: Task, params: SamplingParams, shots: int = DEFAULT_SHOTS
) -> list[AskPlan]:
    """Zero-shot, and `shots` demonstrations chosen by similarity (when the task has a train split)."""
    room = params.max_new_tokens
    plans = [plan_for(model, task, shots=0, max_new_tokens=room)]
    if shots and task.split("train"):
        plans.append(plan_for(model, task, shots=shots, selection="similar", max_new_tokens=room))
    return plans


def best_prompt(
    model: Any,
    task: Task,
    params: SamplingParams,
    *,
    limit: int = DEFAULT_SEARCH_LIMIT,
    shots: int = DEFAULT_SHOTS,
) -> tuple[AskPlan, dict[str, Any]]:
    """(the winning plan, a report of the search) for `model` on `task`'s validation split."""
    plans = candidate_plans(model, task, params, shots)
    validation = task.split("validation")[:limit]
    if not validation or len(plans) == 1:
        reason = "no validation split" if not validation else "no train split for demonstrations"
        return plans[0], {
            "chosen_on": None,
            "note": f"{reason}: the zero-shot prompt is used",
            "candidates": [],
        }
    held_out = dataclasses.replace(task, examples=validation)
    candidates = []
    for plan in plans:
        result = run_task(model, held_out, progress=False, params=params, plan=plan)
        checks = result.output_checks()
        candidates.append({"prompt": plan.describe(), "score": result.aggregates.get(task.primary_metric, 0.0),
                           "empty_rate": checks["empty_rate"], "truncated_rate": checks["truncated_rate"]})  # fmt: skip
    best = max(range(len(plans)), key=lambda i: (candidates[i]["score"], -i))
    others = [c["score"] for i, c in enumerate(candidates) if i != best]
    report = {
        "chosen_on": f"validation ({len(validation)} examples)",
        "metric": task.primary_metric,
        "winner": candidates[best]["prompt"],
        "margin": candidates[best]["score"] - max(others),
        "candidates": candidates,
    }
    return plans[best], report
