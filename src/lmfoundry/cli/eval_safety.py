"""`lmf eval safety MODEL [--compare OTHER]`: refusals on the red-team set, before/after alignment."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lmfoundry.cli.common import add_json_flag, add_subcommand, print_result
from lmfoundry.cli.eval_judge import judge_progress
from lmfoundry.cli.eval_output import fmt, print_table
from lmfoundry.errors import InvalidInputError
from lmfoundry.eval.gates import check_gates, load_gates
from lmfoundry.eval.judges import make_judge
from lmfoundry.eval.safety import (
    METRICS,
    SafetyPrompt,
    as_comparison,
    generate_replies,
    load_safety_set,
    score_replies,
)
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.generate.engine import load_model
from lmfoundry.types import SamplingParams


def register_safety(commands: Any) -> None:
    parser = add_subcommand(
        commands,
        "safety",
        _safety,
        help="red-team prompts: refusal of harmful requests and jailbreaks, answers to benign look-alikes",
        description=(
            "Generates a reply to each prompt of the bundled red-team set (harmful requests, jailbreak styles, "
            "benign look-alikes; or --set FILE), scores it with refusal patterns and, with --judge, a judge's "
            "structured verdict (refusal / harmful / safe), and reports each rate with a bootstrap 95% CI, "
            "and how many replies were empty or cut by the token limit. "
            "--compare OTHER runs OTHER too (e.g. the model before alignment) and adds paired differences. "
            "safety.json is in the comparison format `lmf eval gate` reads; --gates FILE checks it "
            "(configs/gates/safety.yaml) and exits 1 when a gate fails."
        ),
    )
    parser.add_argument("model", help="model to evaluate (store name, path or GGUF file)")
    parser.add_argument("--compare", metavar="OTHER", help="a second model, e.g. the model before RLHF/DPO")
    parser.add_argument(
        "--judge", help="judge spec (model, http URL, or NAME:ARG plugin); patterns only if unset"
    )
    parser.add_argument(
        "--set", dest="prompt_set", help="JSONL prompt set {id, category, prompt} (default: bundled)"
    )
    parser.add_argument("--gates", metavar="GATES.yaml", help="check the result against release gates")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="reply length (default 128)")
    parser.add_argument("--backend", default="auto", help="backend for the evaluated models")
    parser.add_argument("--out", default="safety-eval", help="folder for safety.json and replies.jsonl")
    add_json_flag(parser)


def _safety(args: argparse.Namespace) -> int:
    prompts = load_safety_set(args.prompt_set)
    gates = load_gates(args.gates) if args.gates else None
    if gates is not None and gates.relative and not args.compare:
        raise InvalidInputError("relative gates compare two models: add --compare OTHER")
    params = SamplingParams(temperature=0.0, max_new_tokens=args.max_new_tokens)
    judge = (
        make_judge(args.judge, SamplingParams(temperature=0.0, max_new_tokens=160)) if args.judge else None
    )
    after = _run(args.model, args, prompts, params, judge)
    before = _run(args.compare, args, prompts, params, judge) if args.compare else None
    comparison = as_comparison(after, args.model, before, args.compare)
    out = Path(args.out)
    atomic_write_text(out / "safety.json", json.dumps(comparison, indent=2) + "\n")
    sides = [(args.model, "evaluated", after)] + ([(args.compare, "compared", before)] if before else [])
    lines = [json.dumps({"model": name, "side": side, **row}) for name, side, rows in sides for row in rows]
    atomic_write_text(out / "replies.jsonl", "".join(line + "\n" for line in lines))
    report = check_gates(gates, comparison) if gates is not None else None
    data = {**comparison, "out": str(out), "gates_passed": None if report is None else report.passed}
    print_result(args, data, lambda: _print(comparison, out, report))
    return 0 if report is None or report.passed else 1


def _run(
    name: str, args: argparse.Namespace, prompts: list[SafetyPrompt], params: SamplingParams, judge: Any
) -> list[dict[str, Any]]:
    """Replies of model `name` to every prompt, scored (patterns, and the judge when there is one)."""
    model = load_model(name, backend=args.backend)
    with judge_progress(True, len(prompts) * (2 if judge else 1)) as advance:
        replies = generate_replies(model, prompts, params, on_item=advance)
        return score_replies(prompts, replies, judge, on_item=advance)


def _print(comparison: dict[str, Any], out: Path, report: Any) -> None:
    rows = []
    for name, m in comparison["metrics"].items():
        low, high = m["challenger_ci"]
        change = "" if "diff" not in m else f"{m['diff']:+.3f} [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}]"
        rows.append(
            (name, fmt(m["challenger"]), f"[{low:.3f}, {high:.3f}]", str(m["n"]), change, METRICS[name])
        )
    title = f"safety of {comparison['challenger_model']}"
    if comparison["champion_model"]:
        title += f" (change vs {comparison['champion_model']})"
    print_table(title, ("metric", "rate", "95% CI", "n", "change", "what"), rows)
    for side, role in (("challenger", "evaluated"), ("champion", "compared")):
        if side in comparison["outputs"]["empty_rate"]:
            model = comparison[f"{side}_model"]
            print(f"{role} {model}: {_outputs_line(comparison['outputs'], side, comparison['n'])}")
    judge = comparison["summary"]["judge"]
    if judge["n_judged"]:
        print(f"judge vs patterns agree on 'refused' for {fmt(judge['pattern_agreement'])} of {judge['n_judged']} "
              f"replies; unparseable verdicts: {judge['n_unparseable']}")  # fmt: skip
    if report is not None:
        print(report.markdown(), end="")
    print(f"wrote {out / 'safety.json'} and {out / 'replies.jsonl'}")


def _outputs_line(outputs: dict[str, Any], side: str, n: int) -> str:
    """Empty and truncated replies of one side, as counts and rates (they are scored as written)."""
    empty, cut = outputs["empty_rate"][side], outputs["truncated_rate"][side]
    return (
        f"{round(empty * n)}/{n} empty replies ({fmt(empty)}), {round(cut * n)}/{n} cut by the token "
        f"limit ({fmt(cut)}; raise --max-new-tokens if many)"
    )
