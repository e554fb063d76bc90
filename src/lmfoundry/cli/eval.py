"""`lmf eval`: evaluate, compare champion vs challenger, gate, judge with a model, report, lm-eval."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lmfoundry.cli.common import add_command_group, add_json_flag, add_subcommand, print_result
from lmfoundry.cli.eval_judge import register_judge, register_judge_agreement
from lmfoundry.cli.eval_models import register_approaches, register_compare, register_run
from lmfoundry.cli.eval_output import fmt, print_table
from lmfoundry.cli.eval_rag import register_rag_answers
from lmfoundry.cli.eval_safety import register_safety
from lmfoundry.eval.compare import load_comparison
from lmfoundry.eval.gates import check_gates, load_gates
from lmfoundry.eval.lmeval_adapter import run_harness
from lmfoundry.eval.report import write_report
from lmfoundry.fsutil import atomic_write_text

DESCRIPTION = (
    "Evaluate a model on a task (ROUGE, BLEU, chrF, exact match, token F1, latency, cost), "
    "compare two models on identical examples with paired-bootstrap confidence intervals, "
    "check the comparison against a gates YAML (exit code 0 pass, 1 fail), grade outputs with a "
    "judge model, write HTML reports, and run lm-evaluation-harness tasks."
)


def register(subparsers: Any) -> None:
    commands = add_command_group(subparsers, "eval", description=DESCRIPTION)
    register_run(commands)
    register_compare(commands)
    register_approaches(commands)
    _register_gate(commands)
    _register_report(commands)
    register_judge(commands)
    register_judge_agreement(commands)
    register_safety(commands)
    register_rag_answers(commands)
    _register_harness(commands)


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


def _gate(args: argparse.Namespace) -> int:
    report = check_gates(load_gates(args.gates), load_comparison(args.comparison))
    text = report.markdown()
    print(text, end="")
    if args.markdown:
        atomic_write_text(Path(args.markdown), text)
    return 0 if report.passed else 1


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
        (task, key.replace(",none", ""), fmt(value))
        for task, metrics in result["results"].items()
        for key, value in metrics.items()
        if isinstance(value, int | float) and not key.endswith("_stderr,none")
    ]
    print_table(f"lm-eval on {model}", ("task", "metric", "value"), rows)
