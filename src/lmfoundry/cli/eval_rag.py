"""`lmf eval rag-answers`: answer-level evaluation of `lmf rag ask` on a question file, with gates."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lmfoundry.cli.common import add_json_flag, add_subcommand, checked, print_result
from lmfoundry.cli.eval_output import default_out, fmt, print_table
from lmfoundry.eval.gates import load_gates
from lmfoundry.eval.judges import GeneratorJudge, make_judge
from lmfoundry.eval.rag_answers import RagAnswerOptions, check_answer_gates, evaluate_answers, read_questions
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.generate.engine import load_model
from lmfoundry.rag.rerank import make_reranker
from lmfoundry.types import SamplingParams

DESCRIPTION = (
    "Runs the RAG reader on every question of a JSONL file exactly as `lmf rag ask` does and scores "
    "the answers: faithfulness (each sentence supported by a cited chunk, judged), answer relevance "
    "(judged, 1-5 scaled to 0-1), context precision and recall and citation validity/relevance "
    "(against the question's labelled sources or chunk ids, no judge), and refusal on questions marked "
    '"answerable": false. Every metric has a bootstrap CI; empty and truncated answers are counted. '
    "The judge gives schema-constrained JSON verdicts; by default the reader judges itself (a weak "
    "judge: pass a stronger model or an OpenAI-compatible URL with --judge). With --gates, exit 1 "
    "when a gate fails."
)


def register_rag_answers(commands: Any) -> None:
    parser = add_subcommand(commands, "rag-answers", _rag_answers, help="score `lmf rag ask` answers "
                            "(faithfulness, relevance, context, citations, refusal) with CIs and gates",
                            description=DESCRIPTION)  # fmt: skip
    parser.add_argument("store", help="RAG store name")
    parser.add_argument("--questions", required=True, help="question JSONL (question, reference, source, "
                        "chunk_id, answerable)")  # fmt: skip
    parser.add_argument("--model", default="smollm2-135m-instruct", help="reader model (default the "
                        "packaged smollm2-135m-instruct)")  # fmt: skip
    parser.add_argument("--judge", metavar="MODEL_OR_URL", help="judge: a model or an OpenAI-compatible "
                        "base URL (default: the reader itself)")  # fmt: skip
    parser.add_argument("--judge-model", default="default", help="model name sent to a judge endpoint")
    parser.add_argument("--no-judge", action="store_true", help="only the metrics that need no judge")
    parser.add_argument("--judge-max-tokens", type=int, default=64, help="judge reply budget (default 64)")
    parser.add_argument("-k", type=int, default=5, help="chunks retrieved per question (default 5)")
    parser.add_argument(
        "--mode", choices=["dense", "bm25", "hybrid"], default="hybrid", help="retrieval mode"
    )
    parser.add_argument("--rerank", type=checked(_rerank_spec), metavar="SPEC", help="reranker, as for ask")
    parser.add_argument("--cite", choices=["auto", "model", "forced"], default="auto", help="citation mode")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="answer length (default 256)")
    parser.add_argument("--max-claims", type=int, default=5, help="sentences judged per answer (default 5)")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument(
        "--gates", metavar="GATES.yaml", help="absolute gates on the metrics; exit 1 on failure"
    )
    parser.add_argument("--markdown", metavar="OUT.md", help="write the gate table to this file")
    parser.add_argument("--out", help="folder for rag_answers.json (default $LMF_HOME/runs/rag-answers/...)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_json_flag(parser)


def _rerank_spec(text: str) -> str:
    make_reranker(text)  # an unknown spec is a usage error before any model loads
    return text


def _judge(args: argparse.Namespace, reader: Any) -> Any:
    if args.no_judge:
        return None
    params = SamplingParams(temperature=0.0, max_new_tokens=args.judge_max_tokens)
    if args.judge is None:
        return GeneratorJudge(reader, params)
    return make_judge(args.judge, params, judge_model=args.judge_model)


def _rag_answers(args: argparse.Namespace) -> int:
    questions = read_questions(args.questions)[: args.limit]
    spec = load_gates(args.gates) if args.gates else None  # a bad gates file fails before any model loads
    options = RagAnswerOptions(k=args.k, mode=args.mode, rerank=args.rerank, cite=args.cite,
                               max_new_tokens=args.max_new_tokens, max_claims=args.max_claims)  # fmt: skip
    reader = load_model(args.model, fast_gguf=args.cite != "forced")  # as `lmf rag ask` loads it
    judge = _judge(args, reader)
    out = Path(args.out) if args.out else default_out("rag-answers", args.store)
    with (
        _progress(not (args.no_progress or args.json), len(questions)) as advance,
        _row_log(out, advance) as log,
    ):
        result = evaluate_answers(args.store, questions, reader, judge, options, on_row=log)
    result = {"store": args.store, "judge": None if judge is None else args.judge or args.model, **result}
    atomic_write_text(out / "rag_answers.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    report = check_answer_gates(spec, result) if spec else None
    if report and args.markdown:
        atomic_write_text(Path(args.markdown), report.markdown())
    data = {k: v for k, v in result.items() if k != "rows"} | {"out": str(out / "rag_answers.json")}
    if report:
        data["gates_passed"] = report.passed
    print_result(args, data, lambda: _show(result, out, report))
    return 1 if report and not report.passed else 0


def _show(result: dict[str, Any], out: Path, report: Any) -> None:
    s = result["summary"]
    rows = [
        (
            name,
            fmt(m["mean"]),
            "n/a" if m["n"] == 0 else f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]",
            str(m["n"]),
        )
        for name, m in s["metrics"].items()
    ]
    title = f"RAG answers: {result['reader']} on {result['store']}, judge {result['judge'] or 'none'}"
    print_table(title, ("metric", "mean", "95% CI", "n"), rows)
    print(f"questions {s['n']} ({s['n_answerable']} answerable, {s['n_unanswerable']} unanswerable); "
          f"empty {s['n_empty']}, truncated {s['n_truncated']}; "
          f"unparseable judge verdicts {s['n_unparseable_verdicts']}")  # fmt: skip
    print(f"wrote {out / 'rag_answers.json'}")
    if report is not None:
        print(report.markdown(), end="")


@contextlib.contextmanager
def _row_log(out: Path, advance: Callable[[], None]) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Appends each scored row to OUT/rows.jsonl as it is done (then advances the progress bar):
    a long run stopped halfway keeps what it measured (the complete result is rag_answers.json)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "rows.jsonl").open("w", encoding="utf-8") as handle:

        def log(row: dict[str, Any]) -> None:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            advance()

        yield log


def _progress(enabled: bool, total: int) -> Any:
    """A context manager yielding an `advance()` callback, one step per question."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    @contextlib.contextmanager
    def bar() -> Any:
        progress = Progress(TextColumn("asking and judging"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=Console(stderr=True), disable=not enabled,
                            transient=True)  # fmt: skip
        with progress:
            task = progress.add_task("questions", total=total)
            yield lambda: progress.advance(task)

    return bar()
