"""Evaluate baseline and candidate on the same examples and compare them (paired bootstrap CIs)."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.eval.compare import compare_results, save_comparison
from lmfoundry.eval.evaluate import run_task
from lmfoundry.eval.latency import DEFAULT_PRICE_PER_HOUR
from lmfoundry.eval.tasks import load_task
from lmfoundry.generate.engine import load_model
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.stage_kind import StageKind
from lmfoundry.track.runs import log_run


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


class _Counting:
    """Wraps a model so every generation moves the pipeline's bar."""

    def __init__(self, model: Any, name: str, ctx: StageContext) -> None:
        self.model, self.name, self.ctx = model, name, ctx

    def generate(self, prompt: str, params: Any) -> Any:
        result = self.model.generate(prompt, params)
        self.ctx.progress.advance()
        return result


def _evaluate(ctx: StageContext, options: Options, task: Any, adapter: str | None, side: str) -> Any:
    ctx.progress.note(f"{side}: loading")
    adapters = [str(ctx.path(adapter))] if adapter else None
    model = load_model(options.model, backend="transformers", adapters=adapters)
    label = f"{options.model}+{Path(adapter).parent.name}" if adapter else options.model
    ctx.progress.note(f"{side}: {label}")
    params = task.params
    if options.max_new_tokens:
        params = params.replace(max_new_tokens=options.max_new_tokens)
    price = DEFAULT_PRICE_PER_HOUR if options.price_per_hour is None else options.price_per_hour
    result = run_task(
        _Counting(model, label, ctx), task, options.limit, ctx.stage_dir / side, progress=False,
        params=params, price_per_hour=price,
    )  # fmt: skip
    del model
    gc.collect()
    return result


def run(ctx: StageContext, options: Options) -> dict[str, Any]:
    task = load_task(options.task, data_dir=ctx.path(options.data_dir) if options.data_dir else None)
    n = min(len(task.examples), options.limit or len(task.examples))
    ctx.progress.total(2 * n, "generations")
    champion = _evaluate(ctx, options, task, options.baseline_adapter, "champion")
    challenger = _evaluate(ctx, options, task, options.adapter, "challenger")
    comparison = compare_results(champion, challenger, options.n_boot, options.seed, options.confidence)
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
