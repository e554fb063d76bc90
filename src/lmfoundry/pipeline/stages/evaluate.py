"""Evaluate baseline and candidate on the same examples and compare them (paired bootstrap CIs).

Each side is asked in the form it was made for: an adapter through its training template, the
base model at its best prompt among zero-shot and few-shot, chosen on the validation split (the
strongest baseline; `prompt_search: false` keeps the zero-shot prompt, `prompt: NAME` fixes one).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.eval.baseline import best_prompt, candidate_plans
from lmfoundry.eval.compare import compare_results, paired_bootstrap, save_comparison
from lmfoundry.eval.evaluate import run_task
from lmfoundry.eval.latency import DEFAULT_PRICE_PER_HOUR
from lmfoundry.eval.prompting import AskPlan, plan_for, prompt_label
from lmfoundry.eval.tasks import load_task
from lmfoundry.generate.engine import load_model
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.stage_kind import StageKind
from lmfoundry.track.runs import log_run
from lmfoundry.types import Message, SamplingParams


@dataclass
class Options:
    model: str = "smollm2-135m-instruct"
    """Base model (store name, packaged name or directory) shared by both sides."""
    adapter: str | None = None
    """The candidate's adapter (usually `${finetune.adapter_path}`); None = the base model itself."""
    baseline_adapter: str | None = None
    """The baseline's adapter (e.g. the current champion's); None = the base model."""
    task: str = "dialogsum-synthetic"
    data_dir: str | None = None
    """Folder with test.jsonl for dialogsum-synthetic (usually `${data.path}`)."""
    limit: int | None = 40
    max_new_tokens: int | None = None
    """Override the task's generation length (shorter = faster)."""
    n_boot: int = 2000
    confidence: float = 0.95
    seed: int = 0
    price_per_hour: float | None = None
    prompt: str | None = None
    """A prompt template (NAME, NAME@VERSION or a YAML file) for a side without an adapter."""
    shots: int | None = None
    """Demonstrations for that prompt (with `prompt`, or alone: the task's prompt)."""
    prompt_search: bool = True
    """Search the base model's best prompt on the validation split (when neither prompt nor shots)."""
    search_limit: int = 20
    """Validation examples each candidate prompt is scored on."""


class _Counting:
    """Wraps a model so every generation moves the pipeline's bar."""

    def __init__(self, model: Any, name: str, ctx: StageContext) -> None:
        self.model, self.name, self.ctx = model, name, ctx

    def generate(self, prompt: str | list[Message], params: SamplingParams) -> Any:
        result = self.model.generate(prompt, params)
        self.ctx.progress.advance()
        return result


def _params(task: Any, options: Options) -> SamplingParams:
    return (
        task.params.replace(max_new_tokens=options.max_new_tokens) if options.max_new_tokens else task.params
    )


def _ask(
    ctx: StageContext, options: Options, task: Any, model: Any, plan: AskPlan, folder: str, label: str
) -> Any:
    """Run the task's test examples through `plan` into stage_dir/folder."""
    price = DEFAULT_PRICE_PER_HOUR if options.price_per_hour is None else options.price_per_hour
    return run_task(
        _Counting(model, label, ctx), task, options.limit, ctx.stage_dir / folder, progress=False,
        params=_params(task, options), price_per_hour=price, plan=plan,
    )  # fmt: skip


def _load(ctx: StageContext, options: Options, adapter: str | None, side: str) -> tuple[Any, str]:
    ctx.progress.note(f"{side}: loading")
    adapters = [str(ctx.path(adapter))] if adapter else None
    model = load_model(options.model, backend="transformers", adapters=adapters)
    return model, f"{options.model}+{Path(adapter).parent.name}" if adapter else options.model


def _searching(options: Options) -> bool:
    return options.prompt is None and options.shots is None and options.prompt_search


def _base_side(
    ctx: StageContext, options: Options, task: Any
) -> tuple[Any, dict[str, Any] | None, dict[str, Any]]:
    """The base model as champion: at its best prompt (searched on validation), and every other
    candidate prompt on the same test examples too, so the report shows zero- and few-shot side by side."""
    model, label = _load(ctx, options, None, "champion")
    params = _params(task, options)
    if not _searching(options):
        plan = plan_for(
            model, task, prompt=options.prompt, shots=options.shots, max_new_tokens=params.max_new_tokens
        )
        return _ask(ctx, options, task, model, plan, "champion", label), None, {}
    ctx.progress.note("champion: choosing the base model's prompt on the validation split")
    winner, search = best_prompt(model, task, params, limit=options.search_limit)
    results = {}
    for plan in candidate_plans(model, task, params):
        name = prompt_label(plan.describe())
        ctx.progress.note(f"champion: {label} {name}")
        results[name] = _ask(ctx, options, task, model, plan, f"base {name}", label)
    champion = results[prompt_label(winner.describe())]
    champion.save(ctx.stage_dir / "champion")
    del model
    gc.collect()
    return champion, search, results


def _challenger(ctx: StageContext, options: Options, task: Any) -> Any:
    model, label = _load(ctx, options, options.adapter, "challenger")
    params = _params(task, options)
    if options.adapter:
        plan = plan_for(model, task, run=ctx.path(options.adapter), max_new_tokens=params.max_new_tokens)
    else:
        plan = plan_for(
            model, task, prompt=options.prompt, shots=options.shots, max_new_tokens=params.max_new_tokens
        )
    ctx.progress.note(f"challenger: {label}")
    result = _ask(ctx, options, task, model, plan, "challenger", label)
    del model
    gc.collect()
    return result


def _champion(
    ctx: StageContext, options: Options, task: Any
) -> tuple[Any, dict[str, Any] | None, dict[str, Any]]:
    if options.baseline_adapter is None:
        return _base_side(ctx, options, task)
    model, label = _load(ctx, options, options.baseline_adapter, "champion")
    plan = plan_for(
        model,
        task,
        run=ctx.path(options.baseline_adapter),
        max_new_tokens=_params(task, options).max_new_tokens,
    )
    return _ask(ctx, options, task, model, plan, "champion", label), None, {}


def baseline_rows(
    results: dict[str, Any], challenger: Any, metric: str, options: Options
) -> list[dict[str, Any]]:
    """Each base prompt on the test examples: its score, empty rate, and the challenger's paired
    difference from it with a bootstrap CI."""
    rows = []
    ids = [o.id for o in challenger.outputs]
    tuned = challenger.scores(metric)
    for name, result in results.items():
        scores = result.scores(metric)
        versus = paired_bootstrap([scores[i] for i in ids], [tuned[i] for i in ids], options.n_boot,
                                  options.seed, options.confidence)  # fmt: skip
        rows.append({"prompt": name, "score": versus["champion"], "empty_rate": result.output_checks()["empty_rate"],
                     "challenger_minus_this": {k: versus[k] for k in ("diff", "ci_low", "ci_high")}})  # fmt: skip
    return rows


def run(ctx: StageContext, options: Options) -> dict[str, Any]:
    task = load_task(options.task, data_dir=ctx.path(options.data_dir) if options.data_dir else None)
    n = min(len(task.examples), options.limit or len(task.examples))
    sides = 1 + (2 if options.baseline_adapter is None and _searching(options) and task.split("train") else 1)
    ctx.progress.total(sides * n, "generations")
    champion, search, candidates = _champion(ctx, options, task)
    challenger = _challenger(ctx, options, task)
    comparison = compare_results(champion, challenger, options.n_boot, options.seed, options.confidence)
    comparison["prompt_search"] = {"champion": search, "challenger": None}
    comparison["baselines"] = baseline_rows(candidates, challenger, task.primary_metric, options)
    path = save_comparison(comparison, ctx.stage_dir / "comparison.json")
    outputs = _outputs(ctx, options, task, comparison, path)
    outputs["run_id"] = _track(ctx, options, task, comparison, champion, challenger, path)
    return outputs


def _outputs(
    ctx: StageContext, options: Options, task: Any, comparison: dict[str, Any], path: Path
) -> dict[str, Any]:
    return {
        "compare_dir": str(ctx.stage_dir),
        "comparison": str(path),
        "n": comparison["n"],
        "metrics": {
            name: {k: m[k] for k in ("champion", "challenger", "diff", "ci_low", "ci_high")}
            for name, m in comparison["metrics"].items()
        },
        "model": options.model,
        "adapter": str(ctx.path(options.adapter)) if options.adapter else None,
        "candidate_outputs": str(ctx.stage_dir / "challenger" / "outputs.jsonl"),
        "task": task.name,
        "empty_rate": {
            side: comparison["outputs"]["empty_rate"][side] for side in ("champion", "challenger")
        },
        "prompts": comparison["prompts"],
        "baseline_prompt_search": comparison["prompt_search"]["champion"],
        "baselines": comparison["baselines"],
    }


def _track(
    ctx: StageContext,
    options: Options,
    task: Any,
    comparison: dict[str, Any],
    champion: Any,
    challenger: Any,
    path: Path,
) -> str | None:
    if not ctx.tracking:
        return None
    params = {"model": options.model, "adapter": options.adapter, "task": task.name, "n": comparison["n"],
              "champion_prompt": champion.prompt}  # fmt: skip
    metrics = {f"challenger.{k}": v for k, v in challenger.aggregates.items()}
    metrics |= {f"champion.{k}": v for k, v in champion.aggregates.items()}
    metrics |= {f"diff.{k}": m["diff"] for k, m in comparison["metrics"].items()}
    return log_run("eval", params, metrics, [path], None, run_name=f"pipeline:{ctx.name}")


def fresh(ctx: StageContext, outputs: dict[str, Any]) -> bool:
    return Path(outputs["comparison"]).is_file() and Path(outputs["candidate_outputs"]).is_file()


KIND = StageKind(Options, run, fresh, summary=(__doc__ or "").strip().splitlines()[0])
