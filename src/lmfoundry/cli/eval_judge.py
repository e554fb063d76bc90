"""`lmf eval judge` and `lmf eval judge-agreement`: grade outputs with a judge model, and measure the judge."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lmfoundry.cli.common import (
    add_json_flag,
    add_sampling_options,
    add_subcommand,
    print_result,
    sampling_overrides,
)
from lmfoundry.cli.eval_output import default_out, fmt, print_table
from lmfoundry.eval.judge import pairwise_items, read_outputs, rubric_items, run_judge
from lmfoundry.eval.judge_agreement import agreement, read_labels
from lmfoundry.eval.judge_prompts import load_rubric
from lmfoundry.eval.judges import make_judge
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.types import SamplingParams


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


def register_judge(commands: Any) -> None:
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


def register_judge_agreement(commands: Any) -> None:
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
    with judge_progress(not args.no_progress, calls) as advance:
        result = run_judge(judge, items, rubric=rubric, pairwise=bool(args.pairwise), repeats=args.repeats,
                           seed=args.seed or 0, on_item=advance)  # fmt: skip
    result = {"judge": args.judge, "model_a": _model_name(args.outputs), **result}
    if args.pairwise:
        result["model_b"] = _model_name(args.pairwise)
    out = Path(args.out) if args.out else default_out("judge", result["mode"])
    atomic_write_text(out / "judge.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    data = {k: v for k, v in result.items() if k != "runs"} | {"out": str(out / "judge.json")}
    return print_result(args, data, lambda: _print_judged(result, args, len(items), out / "judge.json"))


def _print_judged(result: dict[str, Any], args: argparse.Namespace, n_items: int, path: Path) -> None:
    rows = [(k, fmt(v)) for k, v in result["summary"].items()]
    rows += [
        (f"{result['headline']} over {args.repeats} repeats: {k}", fmt(v))
        for k, v in result["variance"].items()
    ]
    print_table(f"judge {args.judge} ({result['mode']}, {n_items} examples)", ("", "value"), rows)
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
    rows = [(k, fmt(result[k])) for k in keys if k in result]
    print_table(f"judge {judge} vs human labels ({kind})", ("", "value"), rows)


def judge_progress(enabled: bool, total: int) -> Any:
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
