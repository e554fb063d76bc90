"""`lmf eval`: evaluate, compare champion vs challenger, gate, judge with a model, report, lm-eval."""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.cli.common import (
    add_command_group,
    add_json_flag,
    add_sampling_options,
    add_subcommand,
    print_result,
    sampling_overrides,
)
from lmfoundry.cli.tracking import add_track_flag, track_cli_run
from lmfoundry.eval.compare import compare_results, load_comparison, save_comparison
from lmfoundry.eval.evaluate import run_task
from lmfoundry.eval.gates import check_gates, load_gates
from lmfoundry.eval.judge import pairwise_items, read_outputs, rubric_items, run_judge
from lmfoundry.eval.judge_agreement import agreement, read_labels
from lmfoundry.eval.judge_prompts import load_rubric
from lmfoundry.eval.judges import make_judge
from lmfoundry.eval.latency import DEFAULT_PRICE_PER_HOUR
from lmfoundry.eval.lmeval_adapter import run_harness
from lmfoundry.eval.report import write_report
from lmfoundry.eval.tasks import load_task
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.generate.engine import load_model
from lmfoundry.paths import lmf_home
from lmfoundry.types import SamplingParams

if TYPE_CHECKING:
    from lmfoundry.eval.evaluate import EvalResult
    from lmfoundry.eval.tasks import Task

TASK_HELP = "dialogsum-synthetic, closed-book-qa, or jsonl:PATH (records with input/reference)"


def register(subparsers: Any) -> None:
    commands = add_command_group(
        subparsers,
        "eval",
        required=True,
        help="evaluate models, compare champion vs challenger, gate, judge, report",
        description=(
            "Evaluate a model on a task (ROUGE, BLEU, chrF, exact match, token F1, latency, cost), "
            "compare two models on identical examples with paired-bootstrap confidence intervals, "
            "check the comparison against a gates YAML (exit code 0 pass, 1 fail), grade outputs with a "
            "judge model, write HTML reports, and run lm-evaluation-harness tasks."
        ),
    )
    _register_run(commands)
    _register_compare(commands)
    _register_gate(commands)
    _register_report(commands)
    _register_judge(commands)
    _register_judge_agreement(commands)
    _register_harness(commands)


def _add_task_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help=TASK_HELP)
    parser.add_argument("--limit", type=int, help="evaluate only the first N examples")
    parser.add_argument(
        "--data-dir",
        help="folder with test.jsonl for dialogsum-synthetic (default $LMF_HOME/data/dialogsum-synthetic)",
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


def _register_run(commands: Any) -> None:
    parser = add_subcommand(
        commands,
        "run",
        _run,
        help="evaluate one model on a task",
        description="Generate an answer per example, score it, and write outputs.jsonl + results.json.",
    )
    parser.add_argument("model", metavar="MODEL", help="store name, packaged name, HF directory or .gguf")
    parser.add_argument("--out", help="output folder (default $LMF_HOME/runs/eval/TIMESTAMP-TASK)")
    _add_task_options(parser)
    add_track_flag(parser)


def _register_compare(commands: Any) -> None:
    parser = add_subcommand(
        commands,
        "compare",
        _compare,
        help="evaluate champion and challenger on identical examples and compare them",
        description=(
            "Runs both models on the same examples and reports, per metric, the means, the difference "
            "(challenger - champion) with a paired-bootstrap CI, wins/ties/losses, and latency/cost. "
            "Writes champion/, challenger/ and comparison.json (the input of `lmf eval gate`)."
        ),
    )
    parser.add_argument("champion", metavar="CHAMPION", help="the model in production")
    parser.add_argument("challenger", metavar="CHALLENGER", help="the candidate model")
    parser.add_argument("--out", help="output folder (default $LMF_HOME/runs/compare/TIMESTAMP-TASK)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--boot-seed", type=int, default=0, help="bootstrap resampling seed (default 0)")
    parser.add_argument("--confidence", type=float, default=0.95, help="CI confidence (default 0.95)")
    _add_task_options(parser)


def _register_gate(commands: Any) -> None:
    parser = add_subcommand(
        commands,
        "gate",
        _gate,
        help="check a comparison against release gates (exit 0 pass, 1 fail)",
        description="Check comparison.json against a gates YAML (see configs/gates/default.yaml) and print a markdown table.",
    )
    parser.add_argument("gates", metavar="GATES.yaml", help="thresholds file")
    parser.add_argument("--comparison", required=True, help="comparison.json written by `lmf eval compare`")
    parser.add_argument("--markdown", metavar="OUT.md", help="also write the markdown table to this file")


def _default_out(kind: str, task: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", task)[-60:]
    return lmf_home() / "runs" / kind / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"


def _load_task(args: argparse.Namespace) -> Task:
    return load_task(args.task, data_dir=args.data_dir)


def _evaluate(model_name: str, task: Task, args: argparse.Namespace, out: Path) -> EvalResult:
    model = load_model(model_name)
    price = DEFAULT_PRICE_PER_HOUR if args.price_per_hour is None else args.price_per_hour
    params = task.params.replace(**sampling_overrides(args))
    return run_task(
        model, task, args.limit, out, progress=not args.no_progress, params=params, price_per_hour=price
    )


def _run(args: argparse.Namespace) -> int:
    task = _load_task(args)
    out = Path(args.out) if args.out else _default_out("eval", task.name)
    result = _evaluate(args.model, task, args, out)
    report = _maybe_report(args, out)
    run_id = _track_run(args, result, out, report)
    data = {**result.summary(), "out": str(out), **report, "run_id": run_id}
    return print_result(args, data, lambda: _print_run(result, task, out, report))


def _print_run(result: EvalResult, task: Task, out: Path, report: dict[str, str]) -> None:
    rows = [(k, f"{v:.4f}") for k, v in result.aggregates.items()] + _latency_rows(result.latency)
    _print_table(f"{result.model} on {task.name} ({len(result.outputs)} examples)", ("metric", "value"), rows)
    print(f"wrote {out / 'results.json'} and {out / 'outputs.jsonl'}")
    _print_written_report(report)


def _print_written_report(report: dict[str, str]) -> None:
    if report:
        print(f"wrote {report['report']}")


def _track_run(args: argparse.Namespace, result: EvalResult, out: Path, report: dict[str, str]) -> str | None:
    """Log the run in MLflow (experiment lmf-eval) unless --no-track: scores, latency, results.json."""
    params = {"model": args.model, "task": result.task, "n": len(result.outputs), "limit": args.limit,
              "price_per_hour": args.price_per_hour, "sampling": result.params}  # fmt: skip
    metrics = {**result.aggregates, "latency": result.latency}
    artifacts = [out / "results.json"]
    if report:
        html = Path(report["report"])
        artifacts += [p for p in (html, html.with_suffix(".json")) if p.is_file()]
    return track_cli_run(
        args, "eval", params, metrics, artifacts, run_name=f"cli:{result.model}:{result.task}"
    )


def _compare(args: argparse.Namespace) -> int:
    task = _load_task(args)
    out = Path(args.out) if args.out else _default_out("compare", task.name)
    champion = _evaluate(args.champion, task, args, out / "champion")
    challenger = _evaluate(args.challenger, task, args, out / "challenger")
    comparison = compare_results(champion, challenger, args.n_boot, args.boot_seed, args.confidence)
    path = save_comparison(comparison, out / "comparison.json")
    report = _maybe_report(args, out)
    return print_result(
        args,
        {**comparison, "out": str(path), **report},
        lambda: _print_comparison(comparison, task, args.confidence, path, report),
    )


def _print_comparison(
    comparison: dict[str, Any], task: Task, confidence: float, path: Path, report: dict[str, str]
) -> None:
    rows = [
        (name, f"{m['champion']:.4f}", f"{m['challenger']:.4f}", f"{m['diff']:+.4f}",
         f"[{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]", f"{m['wins']}/{m['ties']}/{m['losses']}")
        for name, m in comparison["metrics"].items()
    ]  # fmt: skip
    columns = ("metric", "champion", "challenger", "diff", f"{confidence:.0%} CI", "W/T/L")
    _print_table(f"{task.name}: {comparison['n']} paired examples", columns, rows)
    p95 = comparison["latency"]["e2e_s_p95"]
    print(f"latency p95: champion {p95['champion']:.3f}s, challenger {p95['challenger']:.3f}s")
    print(f"wrote {path}")
    _print_written_report(report)


def _maybe_report(args: argparse.Namespace, out: Path) -> dict[str, str]:
    if not args.report:
        return {}

    html_path, _ = write_report(out)
    return {"report": str(html_path)}


def _gate(args: argparse.Namespace) -> int:
    report = check_gates(load_gates(args.gates), load_comparison(args.comparison))
    text = report.markdown()
    print(text, end="")
    if args.markdown:
        atomic_write_text(Path(args.markdown), text)
    return 0 if report.passed else 1


def _latency_rows(latency: dict[str, Any]) -> list[tuple[str, str]]:
    cost = latency.get("cost_per_1m_tokens")
    return [
        ("ttft p50 / p95 (s)", f"{latency['ttft_s']['p50']:.3f} / {latency['ttft_s']['p95']:.3f}"),
        ("e2e p50 / p95 (s)", f"{latency['e2e_s']['p50']:.3f} / {latency['e2e_s']['p95']:.3f}"),
        ("throughput (tokens/s)", f"{latency['throughput_tokens_per_s']:.1f}"),
        ("cost per 1M tokens (USD)", "n/a" if cost is None else f"{cost:.2f}"),
    ]


def _print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


# ---------------------------------------------------------------------------------------------
# report, judge, judge-agreement, harness


def _register_report(commands: Any) -> None:
    parser = add_subcommand(
        commands,
        "report",
        _report,
        help="write a self-contained HTML report (+ JSON) of a run or comparison folder",
        description=(
            "Renders report.html from a folder written by `lmf eval run` or `lmf eval compare`: score and "
            "latency/cost tables, CI bars, score distributions, latency histograms, a judge section when "
            "judge.json is there, and a drill-down per example. Figures are inline PNGs; report.json "
            "beside it holds the same numbers."
        ),
    )
    parser.add_argument(
        "path", metavar="RUN_DIR_OR_COMPARE_DIR", help="folder with results.json or comparison.json"
    )
    parser.add_argument("--out", help="HTML file to write (default RUN_DIR/report.html)")
    add_json_flag(parser)


def _report(args: argparse.Namespace) -> int:
    html_path, json_path = write_report(args.path, args.out)
    return print_result(
        args,
        {"report": str(html_path), "json": str(json_path)},
        lambda: print(f"wrote {html_path} and {json_path}"),
    )


def _add_judge_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "judge",
        metavar="MODEL_OR_URL",
        help="a model lmfoundry can load, or an OpenAI-compatible base URL (http...)",
    )
    parser.add_argument(
        "--judge-model", default="default", help="model name sent to an OpenAI-compatible endpoint"
    )
    parser.add_argument("--rubric", help="rubric file: YAML {name, min, max, text} or plain text (1-5 scale)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_json_flag(parser)
    add_sampling_options(parser)


def _register_judge(commands: Any) -> None:
    parser = add_subcommand(
        commands,
        "judge",
        _judge,
        help="grade outputs with a judge model: rubric scores or pairwise preference",
        description=(
            "Rubric mode scores each output of `lmf eval run` (outputs.jsonl) on the rubric's scale. "
            "Pairwise mode (--pairwise OTHER) asks which of two runs' outputs is better, in both orders to "
            "cancel position bias, and counts contradictions (the same position preferred both times). "
            "Unparseable judge replies are counted (n_unparseable) and excluded from means. --repeats N "
            "judges N times with seeds seed..seed+N-1 and reports the spread. The judge samples at "
            "temperature 0 with one repeat and 0.7 with more, unless --temperature is given."
        ),
    )
    parser.add_argument(
        "--outputs", required=True, help="outputs.jsonl (or its run folder) to judge; model a"
    )
    parser.add_argument(
        "--pairwise", metavar="OTHER_OUTPUTS", help="a second outputs.jsonl on the same examples; model b"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="judge N times with different seeds (default 1)"
    )
    parser.add_argument("--out", help="folder for judge.json (default $LMF_HOME/runs/judge/TIMESTAMP); "
                        "use the run/compare folder to include it in `lmf eval report`")  # fmt: skip
    _add_judge_options(parser)


def _register_judge_agreement(commands: Any) -> None:
    parser = add_subcommand(
        commands,
        "judge-agreement",
        _judge_agreement,
        help="measure a judge against human labels (accuracy, Cohen's kappa)",
        description=(
            "Labels are JSONL, one kind per file: pairwise {prompt, response_a, response_b, human: a|b|tie} "
            "(compared with the both-orders verdict) or rubric {prompt, response, human_score} (also MAE "
            "and within-one accuracy). Unparseable judge replies are counted and excluded."
        ),
    )
    parser.add_argument("--labels", required=True, help="JSONL file of human labels")
    _add_judge_options(parser)


def _judge_backend(args: argparse.Namespace, repeats: int) -> Any:
    overrides = sampling_overrides(args)
    overrides.pop("seed", None)
    defaults = SamplingParams(temperature=0.0 if repeats == 1 else 0.7, max_new_tokens=256)
    return make_judge(args.judge, defaults.replace(**overrides), judge_model=args.judge_model)


def _judge(args: argparse.Namespace) -> int:
    records = read_outputs(args.outputs)
    items = pairwise_items(records, read_outputs(args.pairwise)) if args.pairwise else rubric_items(records)
    rubric = load_rubric(args.rubric) if args.rubric else None
    judge = _judge_backend(args, args.repeats)
    calls = len(items) * args.repeats * (2 if args.pairwise else 1)
    with _judge_progress(not args.no_progress, calls) as advance:
        result = run_judge(judge, items, rubric=rubric, pairwise=bool(args.pairwise), repeats=args.repeats,
                           seed=args.seed or 0, on_item=advance)  # fmt: skip
    result = {"judge": args.judge, "model_a": _model_name(args.outputs), **result}
    if args.pairwise:
        result["model_b"] = _model_name(args.pairwise)
    out = Path(args.out) if args.out else _default_out("judge", result["mode"])
    atomic_write_text(out / "judge.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    data = {k: v for k, v in result.items() if k != "runs"} | {"out": str(out / "judge.json")}
    return print_result(args, data, lambda: _print_judged(result, args, len(items), out / "judge.json"))


def _print_judged(result: dict[str, Any], args: argparse.Namespace, n_items: int, path: Path) -> None:
    rows = [(k, _fmt(v)) for k, v in result["summary"].items()]
    rows += [
        (f"{result['headline']} over {args.repeats} repeats: {k}", _fmt(v))
        for k, v in result["variance"].items()
    ]
    _print_table(f"judge {args.judge} ({result['mode']}, {n_items} examples)", ("", "value"), rows)
    print(f"unparseable judge replies: {result['n_unparseable']} (excluded from means)")
    print(f"wrote {path}")


def _judge_agreement(args: argparse.Namespace) -> int:
    kind, records = read_labels(args.labels)
    rubric = load_rubric(args.rubric) if args.rubric else None
    result = agreement(_judge_backend(args, 1), kind, records, rubric=rubric, seed=args.seed or 0)
    data = {k: v for k, v in result.items() if k != "judgments"}
    return print_result(args, data, lambda: _print_agreement(result, args.judge, kind))


def _print_agreement(result: dict[str, Any], judge: str, kind: str) -> None:
    keys = ["n", "n_scored", "n_unparseable", "accuracy", "kappa", "contradictions", "mae", "within_one"]
    rows = [(k, _fmt(result[k])) for k in keys if k in result]
    _print_table(f"judge {judge} vs human labels ({kind})", ("", "value"), rows)


def _register_harness(commands: Any) -> None:
    parser = add_subcommand(
        commands,
        "harness",
        _harness,
        help="run lm-evaluation-harness tasks on a model (needs `pip install lm-eval`)",
        description=(
            "Runs lm-eval tasks through lmfoundry's lm-eval model adapter (registered as 'lmfoundry'). "
            "A task is an lm-eval task name or a task YAML path; relative data_files in a YAML resolve "
            "against its folder, so local datasets work offline (see configs/lmeval/)."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="store name, packaged name or HF directory")
    parser.add_argument("--tasks", required=True, help="comma-separated task names or task YAML paths")
    parser.add_argument("--include-path", help="folder of extra task YAMLs to register by name")
    parser.add_argument("--limit", type=float, help="examples per task (a fraction < 1 means a share)")
    parser.add_argument("--num-fewshot", type=int, help="few-shot examples per prompt")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for few-shot sampling and generation (default 0)"
    )
    parser.add_argument("--out", help="also write the results to this JSON file")
    add_json_flag(parser)


def _harness(args: argparse.Namespace) -> int:
    limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    result = run_harness(args.model, tasks, limit=limit, num_fewshot=args.num_fewshot,
                         include_path=args.include_path, seed=args.seed)  # fmt: skip
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    return print_result(args, result, lambda: _print_harness(result, args.model))


def _print_harness(result: dict[str, Any], model: str) -> None:
    rows = [
        (task, key.replace(",none", ""), _fmt(value))
        for task, metrics in result["results"].items()
        for key, value in metrics.items()
        if isinstance(value, int | float) and not key.endswith("_stderr,none")
    ]
    _print_table(f"lm-eval on {model}", ("task", "metric", "value"), rows)


def _judge_progress(enabled: bool, total: int) -> Any:
    """A context manager yielding an `advance()` callback for judge calls."""
    import contextlib

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    @contextlib.contextmanager
    def bar() -> Any:
        progress = Progress(TextColumn("judging"), BarColumn(), MofNCompleteColumn(),
                            console=Console(stderr=True), disable=not enabled, transient=True)  # fmt: skip
        with progress:
            task = progress.add_task("judge", total=total)
            yield lambda: progress.advance(task)

    return bar()


def _model_name(outputs_path: str) -> str:
    """The model recorded in results.json beside an outputs file, else the file path."""
    path = Path(outputs_path)
    folder = path if path.is_dir() else path.parent
    try:
        return str(json.loads((folder / "results.json").read_text(encoding="utf-8"))["model"])
    except (OSError, ValueError, KeyError, TypeError):
        return str(path)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value) if not isinstance(value, dict) else json.dumps(value)
