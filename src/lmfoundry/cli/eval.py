"""`lmf eval`: evaluate a model on a task, compare champion vs challenger, check release gates."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.cli.common import add_json_flag, add_sampling_options, print_json, sampling_overrides
from lmfoundry.paths import lmf_home

if TYPE_CHECKING:
    from lmfoundry.eval.runner import EvalResult
    from lmfoundry.eval.tasks import Task

TASK_HELP = "dialogsum-synthetic, closed-book-qa, or jsonl:PATH (records with input/reference)"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate models, compare champion vs challenger, check release gates",
        description=(
            "Evaluate a model on a task (ROUGE, BLEU, chrF, exact match, token F1, latency, cost), "
            "compare two models on identical examples with paired-bootstrap confidence intervals, "
            "and check the comparison against a gates YAML (exit code 0 pass, 1 fail)."
        ),
    )
    commands = parser.add_subparsers(dest="eval_command", metavar="SUBCOMMAND", required=True)
    _register_run(commands)
    _register_compare(commands)
    _register_gate(commands)


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
    add_json_flag(parser)
    add_sampling_options(parser)


def _register_run(commands: Any) -> None:
    parser = commands.add_parser(
        "run",
        help="evaluate one model on a task",
        description="Generate an answer per example, score it, and write outputs.jsonl + results.json.",
    )
    parser.add_argument("model", metavar="MODEL", help="store name, packaged name, HF directory or .gguf")
    parser.add_argument("--out", help="output folder (default $LMF_HOME/runs/eval/TIMESTAMP-TASK)")
    _add_task_options(parser)
    parser.set_defaults(handler=_run)


def _register_compare(commands: Any) -> None:
    parser = commands.add_parser(
        "compare",
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
    parser.set_defaults(handler=_compare)


def _register_gate(commands: Any) -> None:
    parser = commands.add_parser(
        "gate",
        help="check a comparison against release gates (exit 0 pass, 1 fail)",
        description="Check comparison.json against a gates YAML (see configs/gates/default.yaml) and print a markdown table.",
    )
    parser.add_argument("gates", metavar="GATES.yaml", help="thresholds file")
    parser.add_argument("--comparison", required=True, help="comparison.json written by `lmf eval compare`")
    parser.add_argument("--markdown", metavar="OUT.md", help="also write the markdown table to this file")
    parser.set_defaults(handler=_gate)


def _default_out(kind: str, task: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", task)[-60:]
    return lmf_home() / "runs" / kind / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"


def _load_task(args: argparse.Namespace) -> Task:
    from lmfoundry.eval.tasks import load_task

    return load_task(args.task, data_dir=args.data_dir)


def _evaluate(model_name: str, task: Task, args: argparse.Namespace, out: Path) -> EvalResult:
    import lmfoundry
    from lmfoundry.eval.latency import DEFAULT_PRICE_PER_HOUR
    from lmfoundry.eval.runner import run_task

    model = lmfoundry.load(model_name)
    price = DEFAULT_PRICE_PER_HOUR if args.price_per_hour is None else args.price_per_hour
    params = task.params.replace(**sampling_overrides(args))
    return run_task(
        model, task, args.limit, out, progress=not args.no_progress, params=params, price_per_hour=price
    )


def _run(args: argparse.Namespace) -> int:
    task = _load_task(args)
    out = Path(args.out) if args.out else _default_out("eval", task.name)
    result = _evaluate(args.model, task, args, out)
    if args.json:
        print_json({**result.summary(), "out": str(out)})
        return 0
    rows = [(k, f"{v:.4f}") for k, v in result.aggregates.items()] + _latency_rows(result.latency)
    _print_table(f"{result.model} on {task.name} ({len(result.outputs)} examples)", ("metric", "value"), rows)
    print(f"wrote {out / 'results.json'} and {out / 'outputs.jsonl'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from lmfoundry.eval.compare import compare_results, save_comparison

    task = _load_task(args)
    out = Path(args.out) if args.out else _default_out("compare", task.name)
    champion = _evaluate(args.champion, task, args, out / "champion")
    challenger = _evaluate(args.challenger, task, args, out / "challenger")
    comparison = compare_results(champion, challenger, args.n_boot, args.boot_seed, args.confidence)
    path = save_comparison(comparison, out / "comparison.json")
    if args.json:
        print_json({**comparison, "out": str(path)})
        return 0
    rows = [
        (name, f"{m['champion']:.4f}", f"{m['challenger']:.4f}", f"{m['diff']:+.4f}",
         f"[{m['ci_low']:+.4f}, {m['ci_high']:+.4f}]", f"{m['wins']}/{m['ties']}/{m['losses']}")
        for name, m in comparison["metrics"].items()
    ]  # fmt: skip
    columns = ("metric", "champion", "challenger", "diff", f"{args.confidence:.0%} CI", "W/T/L")
    _print_table(f"{task.name}: {comparison['n']} paired examples", columns, rows)
    p95 = comparison["latency"]["e2e_s_p95"]
    print(f"latency p95: champion {p95['champion']:.3f}s, challenger {p95['challenger']:.3f}s")
    print(f"wrote {path}")
    return 0


def _gate(args: argparse.Namespace) -> int:
    from lmfoundry.eval.compare import load_comparison
    from lmfoundry.eval.gates import check_gates, load_gates
    from lmfoundry.fsutil import atomic_write_text

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
