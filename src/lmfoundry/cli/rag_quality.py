"""`lmf rag testset | eval | tune-embedder`: measure and raise retrieval quality on a store.

Part of the `rag` command group (`cli/rag.py` adds these subcommands to it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lmfoundry.cli.common import add_json_flag, add_subcommand, print_result
from lmfoundry.errors import InvalidInputError
from lmfoundry.rag.index import open_index
from lmfoundry.rag.retrieval_eval import (
    DEFAULT_CONFIGS,
    REWRITES,
    evaluate,
    format_table,
    load_questions,
    save_table,
    split_config,
)
from lmfoundry.rag.testset import generate_testset, model_generator, write_testset
from lmfoundry.rag.tune_embedder import TuneOptions, tune_embedder


def add_quality_commands(commands: Any) -> None:
    _add_testset(commands)
    _add_eval(commands)
    _add_tune(commands)


def _add_testset(commands: Any) -> None:
    p = add_subcommand(
        commands,
        "testset",
        _testset,
        help="generate retrieval questions from a store's chunks with a model",
        description=(
            "Write one question per sampled chunk with a model, keep those that pass the filters "
            "(a question was parsed; its key terms occur in the chunk; no 6-word run is copied from "
            "it; the model answers it from the chunk alone; not a near-duplicate), and write JSONL "
            "rows {question, source, chunk_id} for `lmf rag eval` and `lmf rag tune-embedder`."
        ),
    )
    p.add_argument("store", help="store name")
    p.add_argument(
        "--model",
        required=True,
        help="question writer: a model name/path lmfoundry loads (e.g. smollm2-135m-instruct) or the URL "
        "of an OpenAI-compatible endpoint (http://HOST:PORT/v1)",
    )
    p.add_argument("--endpoint-model", default="default", help="model asked for at an endpoint URL")
    p.add_argument("--n", type=int, default=50, help="chunks to ask about (default 50)")
    p.add_argument("--out", type=Path, help="output JSONL (default: STORE-questions.jsonl here)")
    p.add_argument("--no-answer-check", action="store_true", help="skip the round trip (the model answering)")
    add_json_flag(p)


def _add_eval(commands: Any) -> None:
    p = add_subcommand(
        commands,
        "eval",
        _eval,
        help="recall@k, MRR and nDCG of retrieval configurations on a question file",
        description=(
            "Score each configuration MODE[+RERANK] (default: "
            + ", ".join(DEFAULT_CONFIGS)
            + ") on a JSONL of {question, source|sources|topic}: recall@1/5/10, MRR@10 and nDCG@10, "
            "each source document counted once, with 95% bootstrap CIs. The table is saved in the "
            "store folder, so `lmf rag search`/`ask` warn when a chosen reranker measured worse "
            "than none."
        ),
    )
    p.add_argument("store", help="store name")
    p.add_argument("questions", type=Path, help="question JSONL")
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="MODE[+RERANK]",
        help="a configuration to score (repeatable), e.g. hybrid+llm or dense+mmr:0.8",
    )
    p.add_argument(
        "--rewrite",
        choices=sorted(REWRITES),
        default="none",
        help="query rewrite: none, or keywords (drop question and stop words)",
    )
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--no-save", action="store_true", help="do not save the table in the store folder")
    add_json_flag(p)


def _add_tune(commands: Any) -> None:
    p = add_subcommand(
        commands,
        "tune-embedder",
        _tune,
        help="fine-tune the store's embedder on its questions and re-index",
        description=(
            "Hold out --test-fraction of the questions, fine-tune the embedder on the rest "
            "(MultipleNegativesRankingLoss: in-batch negatives plus one mined hard negative per "
            "question), save it as $LMF_HOME/embedders/NAME, index the store's sources into "
            "STORE-NAME with it, and compare before/after on the held-out questions (paired "
            "bootstrap CIs). A killed run resumes from its last checkpoint."
        ),
    )
    p.add_argument("store", help="store name")
    p.add_argument("questions", type=Path, help="question JSONL with chunk_id (from `lmf rag testset`)")
    p.add_argument("--name", required=True, help="name of the tuned embedder")
    p.add_argument("--epochs", type=int, default=1, help="training epochs (default 1)")
    p.add_argument("--batch-size", type=int, default=16, help="pairs per batch (default 16)")
    p.add_argument("--learning-rate", type=float, default=2e-5, help="default 2e-5")
    p.add_argument("--no-hard-negatives", action="store_true", help="in-batch negatives only")
    p.add_argument("--test-fraction", type=float, default=0.3, help="questions held out (default 0.3)")
    p.add_argument("--seed", type=int, default=0, help="split and training seed (default 0)")
    p.add_argument("--save-steps", type=int, default=20, help="checkpoint every N steps (default 20)")
    add_json_flag(p)


@contextmanager
def _bar(enabled: bool, total: int) -> Iterator[Callable[[str], Callable[[], None]]]:
    """A stderr progress display; yields `task(label) -> advance()`."""
    if not enabled:
        yield lambda label: lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:

        def task(label: str) -> Callable[[], None]:
            tid = bar.add_task(label, total=total)
            return lambda: bar.advance(tid)

        yield task


def _testset(args: argparse.Namespace) -> int:
    out = args.out or Path(f"{args.store}-questions.jsonl")
    index = open_index(args.store)
    try:
        generate = model_generator(args.model, endpoint_model=args.endpoint_model)
        with _bar(not args.json, args.n) as task:
            rows, report = generate_testset(
                index, generate, args.n, answer_check=not args.no_answer_check, on_chunk=task("questions")
            )
    finally:
        index.close()
    write_testset(rows, out)
    data = {"out": str(out), "questions": len(rows), "filters": report.to_dict()}
    return print_result(args, data, lambda: _print_testset(data))


def _print_testset(data: dict[str, Any]) -> None:
    f = data["filters"]
    print(
        f"{data['questions']} questions -> {data['out']}\n"
        f"chunks {f['chunks']}, generated {f['generated']}, parsed {f['parsed']}, grounded {f['grounded']}, "
        f"not copied {f['not_copied']}, answerable {f['answerable']}, unique {f['unique']}"
    )


def _eval(args: argparse.Namespace) -> int:
    configs = args.config or list(DEFAULT_CONFIGS)
    for config in configs:
        split_config(config)  # a bad spec fails before anything loads
    if args.n_boot < 1:
        raise InvalidInputError(f"--n-boot must be >= 1, got {args.n_boot}")
    questions = load_questions(args.questions)
    index = open_index(args.store)
    try:
        with _bar(not args.json, len(questions)) as task:
            table = evaluate(
                index, questions, configs, rewrite=args.rewrite, n_boot=args.n_boot, progress=task
            )
        saved = None if args.no_save else save_table(index, table)
    finally:
        index.close()
    if saved:
        table["saved"] = str(saved)
    return print_result(args, table, lambda: print(format_table(table)))


def _tune(args: argparse.Namespace) -> int:
    options = TuneOptions(
        name=args.name,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        hard_negatives=not args.no_hard_negatives,
        test_fraction=args.test_fraction,
        seed=args.seed,
        save_steps=args.save_steps,
    )
    questions = load_questions(args.questions)
    log = (lambda m: None) if args.json else (lambda m: print(f"lmf: {m}", file=sys.stderr))
    report = tune_embedder(args.store, questions, options, log=log)
    return print_result(args, report, lambda: _print_tune(report))


def _print_tune(report: dict[str, Any]) -> None:
    q = report["questions"]
    print(f"embedder {report['embedder']} ({report['path']}); store {report['store']}")
    print(f"held-out questions: {q['test']} (trained on {q['train']})")
    for config, metrics in report["held_out"].items():
        cells = ", ".join(
            f"{m} {v['before']:.3f} -> {v['after']:.3f} ({v['diff']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}])"
            for m, v in metrics.items()
        )
        print(f"  {config}: {cells}")
