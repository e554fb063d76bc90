"""`lmf eval run` and `lmf eval compare`: evaluate a model or a fine-tuning run on a task, or two
of them on identical examples, each asked in the form it was made for (or with `--prompt`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lmfoundry.cli.common import (
    add_json_flag,
    add_sampling_options,
    add_subcommand,
    print_result,
    sampling_overrides,
)
from lmfoundry.cli.eval_output import (
    default_out,
    latency_rows,
    maybe_report,
    print_table,
    print_written_report,
)
from lmfoundry.cli.tracking import add_track_flag, track_cli_run
from lmfoundry.eval.approaches import APPROACHES_FILE, run_approaches
from lmfoundry.eval.approaches_report import write_approaches_report
from lmfoundry.eval.baseline import best_prompt
from lmfoundry.eval.compare import compare_results, save_comparison
from lmfoundry.eval.evaluate import EvalResult, run_task
from lmfoundry.eval.latency import DEFAULT_PRICE_PER_HOUR
from lmfoundry.eval.prompting import DEFAULT_SHOTS, AskPlan, plan_for
from lmfoundry.eval.subjects import Subject, load_subject
from lmfoundry.eval.tasks import Task, load_task, task_names
from lmfoundry.prompts.registry import link_to_run
from lmfoundry.prompts.template import SELECTIONS
from lmfoundry.types import SamplingParams

SUBJECT_HELP = "a model (store name, packaged name, profile, folder, .gguf) or a fine-tuning run folder"


def add_task_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help=f"{', '.join(task_names())} or a plugin's task")
    parser.add_argument("--limit", type=int, help="evaluate only the first N examples")
    parser.add_argument(
        "--data-dir",
        help="folder with train/validation/test.jsonl for dialogsum-synthetic "
        "(default $LMF_HOME/data/dialogsum-synthetic)",
    )
    parser.add_argument(
        "--price-per-hour",
        type=float,
        help="hardware price in USD/hour for cost per 1M tokens (default 0.10)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--report", action="store_true", help="also write report.html (+ report.json) into the output folder"
    )
    add_json_flag(parser)
    add_sampling_options(parser)


def add_prompt_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "prompt",
        "By default a model is asked with the task's prompt through its chat template (plain text "
        "without one), and a fine-tuning run with the template it was trained on.",
    )
    group.add_argument(
        "--prompt", help="a prompt template: NAME, NAME@VERSION or a YAML file (`lmf prompts list`)"
    )
    group.add_argument("--shots", type=int, help="demonstrations per prompt (0 = zero-shot)")
    group.add_argument(
        "--selection", choices=SELECTIONS, help="how demonstrations are chosen (default: the template's)"
    )


def register_run(commands: Any) -> None:
    parser = add_subcommand(
        commands,
        "run",
        _run,
        help="evaluate one model on a task",
        description=(
            "Generate an answer per example, score it, and write outputs.jsonl + results.json. Empty "
            "outputs, outputs a stop string cut at their first character and outputs the length limit "
            "cut are counted (empty_rate, cut_at_start_rate, truncated_rate)."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help=SUBJECT_HELP)
    parser.add_argument("--out", help="output folder (default $LMF_HOME/runs/eval/TIMESTAMP-TASK)")
    add_task_options(parser)
    add_prompt_options(parser)
    add_track_flag(parser)


def register_compare(commands: Any) -> None:
    parser = add_subcommand(
        commands,
        "compare",
        _compare,
        help="evaluate champion and challenger on identical examples and compare them",
        description=(
            "Runs both on the same examples and reports, per metric, the means, the difference "
            "(challenger - champion) with a paired-bootstrap CI, wins/ties/losses, empty and truncated "
            "rates, and latency/cost. A model used as it comes is evaluated at its best prompt among "
            "zero-shot and few-shot, chosen on the validation split (--no-prompt-search: the task's "
            "zero-shot prompt). Writes champion/, challenger/ and comparison.json (the input of "
            "`lmf eval gate`)."
        ),
    )
    parser.add_argument("champion", metavar="CHAMPION", help=f"the model in production: {SUBJECT_HELP}")
    parser.add_argument("challenger", metavar="CHALLENGER", help="the candidate, likewise")
    parser.add_argument("--out", help="output folder (default $LMF_HOME/runs/compare/TIMESTAMP-TASK)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--boot-seed", type=int, default=0, help="bootstrap resampling seed (default 0)")
    parser.add_argument("--confidence", type=float, default=0.95, help="CI confidence (default 0.95)")
    parser.add_argument(
        "--no-prompt-search", action="store_true", help="ask models used as they come zero-shot, no search"
    )
    add_task_options(parser)
    add_prompt_options(parser)


def register_approaches(commands: Any) -> None:
    parser = add_subcommand(
        commands,
        "approaches",
        _approaches,
        help="prompt, retrieve or fine-tune? every approach to a task side by side",
        description=(
            "Evaluates MODEL zero-shot, few-shot with random demonstrations and few-shot with the "
            "demonstrations most similar to each input (from the task's train split), and each --run "
            "through its training template, on the same test examples. Reports each approach's score "
            "with a paired-bootstrap CI against zero-shot, empty and truncated rates, prompt tokens per "
            "request, latency and training cost; writes approaches.json (and report.html with --report)."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="the base model the prompts ask")
    parser.add_argument(
        "--run", action="append", default=[], help="a fine-tuning run to include (repeatable)"
    )
    parser.add_argument(
        "--shots",
        type=int,
        default=DEFAULT_SHOTS,
        help=f"demonstrations per few-shot prompt (default {DEFAULT_SHOTS})",
    )
    parser.add_argument("--out", help="output folder (default $LMF_HOME/runs/approaches/TIMESTAMP-TASK)")
    parser.add_argument("--confidence", type=float, default=0.95, help="CI confidence (default 0.95)")
    add_task_options(parser)


def _approaches(args: argparse.Namespace) -> int:
    task = load_task(args.task, data_dir=args.data_dir)
    out = Path(args.out) if args.out else default_out("approaches", task.name)
    data = run_approaches(args.model, task, out, runs=args.run, shots=args.shots, limit=args.limit,
                          params=_params(task, args), progress=not args.no_progress, confidence=args.confidence)  # fmt: skip
    report = {"report": str(write_approaches_report(out))} if args.report else {}
    return print_result(
        args, {**data, "out": str(out), **report}, lambda: _print_approaches(data, out, report)
    )


def _print_approaches(data: dict[str, Any], out: Path, report: dict[str, str]) -> None:
    rows = []
    for row in data["approaches"]:
        versus, training = row["vs_zero_shot"], row["training"] or {}
        seconds = training.get("train_seconds")
        rows.append((row["approach"], f"{row['score']:.4f}", f"{versus['diff']:+.4f} [{versus['ci_low']:+.4f}, {versus['ci_high']:+.4f}]",
                     f"{row['empty_rate']:.2f}", f"{row['truncated_rate']:.2f}", f"{row['prompt_tokens_mean']:.0f}",
                     f"{row['latency_p50_s']:.2f}", "-" if seconds is None else f"{seconds:.0f}s"))  # fmt: skip
    columns = ("approach", data["metric"], f"vs zero-shot ({data['confidence']:.0%} CI)", "empty", "truncated",
               "prompt tokens", "latency p50 (s)", "training")  # fmt: skip
    print_table(f"{data['task']}: {data['n']} examples, {data['model']}", columns, rows)
    print(f"wrote {out / APPROACHES_FILE}")
    print_written_report(report)


def _params(task: Task, args: argparse.Namespace) -> SamplingParams:
    return task.params.replace(**sampling_overrides(args))


def _price(args: argparse.Namespace) -> float:
    return DEFAULT_PRICE_PER_HOUR if args.price_per_hour is None else args.price_per_hour


def _explicit_plan(subject: Subject, task: Task, args: argparse.Namespace, params: SamplingParams) -> AskPlan:
    return plan_for(subject.model, task, prompt=args.prompt, shots=args.shots, selection=args.selection,
                    run=subject.run, max_new_tokens=params.max_new_tokens)  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    task = load_task(args.task, data_dir=args.data_dir)
    out = Path(args.out) if args.out else default_out("eval", task.name)
    subject = load_subject(args.model)
    params = _params(task, args)
    plan = _explicit_plan(subject, task, args, params)
    result = run_task(subject.model, task, args.limit, out, progress=not args.no_progress, params=params,
                      price_per_hour=_price(args), plan=plan)  # fmt: skip
    report = maybe_report(args, out)
    run_id = _track_run(args, result, out, report)
    data = {**result.summary(), "out": str(out), **report, "run_id": run_id}
    return print_result(args, data, lambda: _print_run(result, task, out, report))


def outcome_rows(result: EvalResult) -> list[tuple[str, str]]:
    """The prompt and the output checks, as table rows."""
    checks, prompt = result.output_checks(), result.prompt
    counts = checks["counts"]
    n = len(result.outputs)
    return [
        (
            "prompt",
            f"{prompt.get('name')}@{prompt.get('version')} ({prompt.get('form')}, {prompt.get('shots')}-shot)",
        ),
        ("empty outputs", f"{counts['empty']}/{n} ({checks['empty_rate']:.0%})"),
        ("cut at start by a stop string", f"{counts['cut_at_start']}/{n}"),
        ("truncated by the length limit", f"{counts['truncated']}/{n} ({checks['truncated_rate']:.0%})"),
    ]


def _print_run(result: EvalResult, task: Task, out: Path, report: dict[str, str]) -> None:
    rows = [(k, f"{v:.4f}") for k, v in result.aggregates.items()] + outcome_rows(result)
    rows += latency_rows(result.latency)
    print_table(f"{result.model} on {task.name} ({len(result.outputs)} examples)", ("metric", "value"), rows)
    print(f"wrote {out / 'results.json'} and {out / 'outputs.jsonl'}")
    print_written_report(report)


def _track_run(args: argparse.Namespace, result: EvalResult, out: Path, report: dict[str, str]) -> str | None:
    """Log the run in MLflow (experiment lmf-eval) unless --no-track: scores, latency, results.json."""
    params = {"model": args.model, "task": result.task, "n": len(result.outputs), "limit": args.limit,
              "price_per_hour": args.price_per_hour, "sampling": result.params, "prompt": result.prompt}  # fmt: skip
    checks = result.output_checks()
    metrics = {**result.aggregates, "empty_rate": checks["empty_rate"], "truncated_rate": checks["truncated_rate"],
               "latency": result.latency}  # fmt: skip
    artifacts = [out / "results.json"]
    if report:
        html = Path(report["report"])
        artifacts += [p for p in (html, html.with_suffix(".json")) if p.is_file()]
    run_id = track_cli_run(
        args, "eval", params, metrics, artifacts, run_name=f"cli:{result.model}:{result.task}"
    )
    if run_id:
        link_to_run(result.prompt, run_id)
    return run_id


def _side(
    spec: str, task: Task, args: argparse.Namespace, params: SamplingParams, out: Path
) -> tuple[EvalResult, dict[str, Any] | None]:
    """Evaluate one side of a comparison; a model used as it comes first gets its best prompt."""
    subject = load_subject(spec)
    search = None
    if subject.run is None and args.prompt is None and args.shots is None and not args.no_prompt_search:
        plan, search = best_prompt(subject.model, task, params)
    else:
        plan = _explicit_plan(subject, task, args, params)
    result = run_task(subject.model, task, args.limit, out, progress=not args.no_progress, params=params,
                      price_per_hour=_price(args), plan=plan)  # fmt: skip
    return result, search


def _compare(args: argparse.Namespace) -> int:
    task = load_task(args.task, data_dir=args.data_dir)
    out = Path(args.out) if args.out else default_out("compare", task.name)
    params = _params(task, args)
    champion, champion_search = _side(args.champion, task, args, params, out / "champion")
    challenger, challenger_search = _side(args.challenger, task, args, params, out / "challenger")
    comparison = compare_results(champion, challenger, args.n_boot, args.boot_seed, args.confidence)
    comparison["prompt_search"] = {"champion": champion_search, "challenger": challenger_search}
    path = save_comparison(comparison, out / "comparison.json")
    report = maybe_report(args, out)
    return print_result(
        args,
        {**comparison, "out": str(path), **report},
        lambda: print_comparison(comparison, task.name, args.confidence, path, report),
    )


def print_comparison(
    comparison: dict[str, Any], task: str, confidence: float, path: Path, report: dict[str, str]
) -> None:
    rows = [
        (name, f"{m['champion']:.4f}", f"{m['challenger']:.4f}", f"{m['diff']:+.4f}",
         f"[{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]", f"{m['wins']}/{m['ties']}/{m['losses']}")
        for name, m in comparison["metrics"].items()
    ]  # fmt: skip
    for key in ("empty_rate", "truncated_rate"):
        pair = comparison["outputs"][key]
        rows.append(
            (key, f"{pair['champion']:.2f}", f"{pair['challenger']:.2f}", f"{pair['diff']:+.2f}", "", "")
        )
    columns = ("metric", "champion", "challenger", "diff", f"{confidence:.0%} CI", "W/T/L")
    print_table(f"{task}: {comparison['n']} paired examples", columns, rows)
    for side in ("champion", "challenger"):
        prompt = comparison["prompts"][side]
        print(f"{side} prompt: {prompt.get('name')}@{prompt.get('version')} ({prompt.get('form')}, "
              f"{prompt.get('shots')}-shot){_search_note(comparison['prompt_search'][side])}")  # fmt: skip
    p95 = comparison["latency"]["e2e_s_p95"]
    print(f"latency p95: champion {p95['champion']:.3f}s, challenger {p95['challenger']:.3f}s")
    print(f"wrote {path}")
    print_written_report(report)


def _search_note(search: dict[str, Any] | None) -> str:
    if not search:
        return ""
    if not search.get("candidates"):
        return f"; {search.get('note')}"
    scores = ", ".join(f"{c['prompt']['shots']}-shot {c['score']:.4f}" for c in search["candidates"])
    return (
        f"; best of {scores} on {search['chosen_on']} by {search['metric']} (margin {search['margin']:+.4f})"
    )
