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

from lmfoundry.eval.baseline import best_prompt
from lmfoundry.eval.compare import compare_results, save_comparison
from lmfoundry.eval.evaluate import run_task
from lmfoundry.eval.latency import DEFAULT_PRICE_PER_HOUR
from lmfoundry.eval.prompting import AskPlan, plan_for
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


def _plan(
    ctx: StageContext, options: Options, task: Any, model: Any, adapter: str | None, params: SamplingParams
) -> tuple[AskPlan, dict[str, Any] | None]:
    """How this side is asked (and the prompt search's report for a base model, if one ran)."""
    if adapter:
        return plan_for(model, task, run=ctx.path(adapter), max_new_tokens=params.max_new_tokens), None
    if options.prompt is None and options.shots is None and options.prompt_search:
        ctx.progress.note("searching the base model's best prompt on the validation split")
        return best_prompt(model, task, params, limit=options.search_limit)
    explicit = plan_for(
        model, task, prompt=options.prompt, shots=options.shots, max_new_tokens=params.max_new_tokens
    )
    return explicit, None


def _evaluate(
    ctx: StageContext, options: Options, task: Any, adapter: str | None, side: str
) -> tuple[Any, dict[str, Any] | None]:
    ctx.progress.note(f"{side}: loading")
    adapters = [str(ctx.path(adapter))] if adapter else None
    model = load_model(options.model, backend="transformers", adapters=adapters)
    label = f"{options.model}+{Path(adapter).parent.name}" if adapter else options.model
    params = task.params
    if options.max_new_tokens:
        params = params.replace(max_new_tokens=options.max_new_tokens)
    plan, search = _plan(ctx, options, task, model, adapter, params)
    ctx.progress.note(f"{side}: {label}")
    price = DEFAULT_PRICE_PER_HOUR if options.price_per_hour is None else options.price_per_hour
    result = run_task(
        _Counting(model, label, ctx), task, options.limit, ctx.stage_dir / side, progress=False,
        params=params, price_per_hour=price, plan=plan,
    )  # fmt: skip
    del model
    gc.collect()
    return result, search


def run(ctx: StageContext, options: Options) -> dict[str, Any]:
    task = load_task(options.task, data_dir=ctx.path(options.data_dir) if options.data_dir else None)
    n = min(len(task.examples), options.limit or len(task.examples))
    ctx.progress.total(2 * n, "generations")
    champion, champion_search = _evaluate(ctx, options, task, options.baseline_adapter, "champion")
    challenger, challenger_search = _evaluate(ctx, options, task, options.adapter, "challenger")
    comparison = compare_results(champion, challenger, options.n_boot, options.seed, options.confidence)
    comparison["prompt_search"] = {"champion": champion_search, "challenger": challenger_search}
    path = save_comparison(comparison, ctx.stage_dir / "comparison.json")
    outputs: dict[str, Any] = {
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
        "baseline_prompt_search": champion_search,
    }
    outputs["run_id"] = None
    if ctx.tracking:
        params = {"model": options.model, "adapter": options.adapter, "task": task.name, "n": comparison["n"]}
        metrics = {f"challenger.{k}": v for k, v in challenger.aggregates.items()}
        metrics |= {f"champion.{k}": v for k, v in champion.aggregates.items()}
        metrics |= {f"diff.{k}": m["diff"] for k, m in comparison["metrics"].items()}
        outputs["run_id"] = log_run("eval", params, metrics, [path], None, run_name=f"pipeline:{ctx.name}")
    return outputs


def fresh(ctx: StageContext, outputs: dict[str, Any]) -> bool:
    return Path(outputs["comparison"]).is_file() and Path(outputs["candidate_outputs"]).is_file()


KIND = StageKind(Options, run, fresh, summary=(__doc__ or "").strip().splitlines()[0])
