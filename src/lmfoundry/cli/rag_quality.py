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

from lmfoundry.cli.common import add_json_flag, add_subcommand, checked, print_result
from lmfoundry.errors import InvalidInputError
from lmfoundry.rag.index import open_index
from lmfoundry.rag.retrieval_eval import (
    DEFAULT_CONFIGS,
    REWRITES,
    EvalQuestion,
    evaluate,
    format_table,
    load_questions,
    save_table,
    split_config,
)
from lmfoundry.rag.retrieve import LENGTH_PRIOR
from lmfoundry.rag.rewrite import hyde_questions
from lmfoundry.rag.testset import (
    QuestionOptions,
    TestsetReport,
    generate_testset,
    lazy_generator,
    model_generator,
    write_summary,
    write_testset,
)
from lmfoundry.rag.testset_progress import progress_path, summary_path
from lmfoundry.rag.tune_embedder import TuneOptions, tune_embedder


def _length_prior(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise InvalidInputError(f"the length prior must be a number >= 0, got {text!r}")
    return value


def add_length_prior_flag(p: argparse.ArgumentParser) -> None:
    """`--length-prior C` (search and eval): the document-length prior of `rag.retrieve`."""
    p.add_argument(
        "--length-prior",
        type=checked(_length_prior),
        default=LENGTH_PRIOR,
        metavar="C",
        help="lower each chunk's score by C * ln(chunks of its document), so a long document that "
        f"touches everything does not outrank the short one about the subject (default {LENGTH_PRIOR}, "
        "chosen by measurement on the bundled corpus, docs/benchmarks-rag.md; 0 turns it off)",
    )


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
            "For each of --n chunks spread over the store, ask the model for a question about one of "
            "the chunk's sentences (up to --candidates sentences, until one passes), keep the first "
            "that passes the filters (a question was parsed; its key terms occur in the chunk; no "
            "6-word run is copied from it; the model answers it from the chunk alone; not a "
            "near-duplicate), and write JSONL rows {question, source, chunk_id} for `lmf rag eval` and "
            "`lmf rag tune-embedder`. Every chunk's candidates and verdicts are appended to "
            "OUT.progress.jsonl as they are made; rerunning the same command resumes there. "
            "OUT.summary.json holds the per-filter survival counts."
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
    p.add_argument(
        "--candidates", type=int, default=3, help="questions tried per chunk, one per sentence (default 3)"
    )
    p.add_argument("--seed", type=int, default=0, help="shifts which chunks are sampled (default 0)")
    p.add_argument(
        "--threads", type=int, help="CPU threads for a llama.cpp model (1 is fastest on a busy machine)"
    )
    p.add_argument("--no-answer-check", action="store_true", help="skip the round trip (the model answering)")
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard OUT.progress.jsonl from an earlier run instead of resuming",
    )
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
        choices=sorted([*REWRITES, "hyde"]),
        default="none",
        help="query rewrite: none, keywords (drop question and stop words), or hyde (search with the "
        "question plus a passage --rewrite-model writes to answer it)",
    )
    p.add_argument("--rewrite-model", default="smollm2-135m-instruct", help="the model of --rewrite hyde")
    p.add_argument("--rewrite-threads", type=int, help="CPU threads for a llama.cpp --rewrite-model")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    add_length_prior_flag(p)
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
    p.add_argument(
        "--max-seq-length",
        type=int,
        metavar="TOKENS",
        help="truncate training texts to TOKENS (default: the embedder's limit; 128 about halves "
        "the training time on a CPU); the saved embedder still reads whole chunks",
    )
    p.add_argument(
        "--pseudo-queries",
        type=int,
        default=0,
        metavar="N",
        help="also train on N inverse-cloze pairs from the store's chunks (a sentence as the query, "
        "the rest of its chunk as the answer; no model needed); with --test-fraction 1 every "
        "question is held out",
    )
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
    options = QuestionOptions(
        n=args.n, candidates=args.candidates, answer_check=not args.no_answer_check, seed=args.seed
    )
    if args.threads is not None and args.threads < 1:
        raise InvalidInputError(f"--threads must be >= 1, got {args.threads}")
    progress = progress_path(out)
    if args.restart:
        progress.unlink(missing_ok=True)
    model = args.model if "://" not in args.model else f"{args.model} ({args.endpoint_model})"
    index = open_index(args.store)
    try:
        generate = lazy_generator(
            lambda: model_generator(args.model, endpoint_model=args.endpoint_model, threads=args.threads)
        )
        with _testset_bar(not args.json, options.n) as on_chunk:
            rows, report = generate_testset(
                index, generate, options, model=model, progress=progress, on_chunk=on_chunk
            )
    finally:
        index.close()
    write_testset(rows, out)
    summary = summary_path(out)
    write_summary(report, summary)
    data = {"out": str(out), "questions": len(rows), "progress": str(progress), "summary": str(summary)}
    data["filters"] = report.to_dict()
    return print_result(args, data, lambda: _print_testset(data))


@contextmanager
def _testset_bar(enabled: bool, total: int) -> Iterator[Callable[[TestsetReport], None]]:
    """A stderr progress bar over chunks, with the kept and rejected counts so far."""
    if not enabled:
        yield lambda report: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("chunks"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"))
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        tid = bar.add_task("", total=total)

        def update(report: TestsetReport) -> None:
            text = f"kept {report.kept}, rejected candidates {report.rejected}"
            bar.update(tid, completed=report.done, total=report.chunks, description=text)

        yield update


def _print_testset(data: dict[str, Any]) -> None:
    f = data["filters"]
    print(f"{data['questions']} questions from {f['chunks']} chunks -> {data['out']}")
    print(f"survivors of each filter, of {f['generated']} candidates generated:")
    for stage, share in f["survival"].items():
        print(f"  {stage.replace('_', ' '):<11} {f[stage]:>5}  {share:6.1%}")
    for stage, examples in f["examples_rejected"].items():
        for example in examples[:2]:
            print(f"  rejected ({stage.replace('_', ' ')}): {example}")
    print(f"candidates and verdicts: {data['progress']}; summary: {data['summary']}")


def _eval(args: argparse.Namespace) -> int:
    configs = args.config or list(DEFAULT_CONFIGS)
    for config in configs:
        split_config(config)  # a bad spec fails before anything loads
    if args.n_boot < 1:
        raise InvalidInputError(f"--n-boot must be >= 1, got {args.n_boot}")
    questions = load_questions(args.questions)
    if args.rewrite == "hyde":
        questions = _hyde(args, questions)
    index = open_index(args.store)
    try:
        with _bar(not args.json, len(questions)) as task:
            table = evaluate(
                index,
                questions,
                configs,
                rewrite="none" if args.rewrite == "hyde" else args.rewrite,
                n_boot=args.n_boot,
                progress=task,
                length_prior=args.length_prior,
            )
        saved = None if args.no_save else save_table(index, table)
    finally:
        index.close()
    if saved:
        table["saved"] = str(saved)
    if args.rewrite == "hyde":
        table["rewrite"] = f"hyde ({args.rewrite_model})"
    return print_result(args, table, lambda: print(format_table(table)))


def _hyde(args: argparse.Namespace, questions: list[EvalQuestion]) -> list[EvalQuestion]:
    """The questions rewritten by `--rewrite hyde` (one generation each, with a progress bar)."""
    generate = model_generator(args.rewrite_model, max_new_tokens=96, threads=args.rewrite_threads)
    with _bar(not args.json, len(questions)) as task:
        return hyde_questions(questions, generate, task("hyde rewrite"))


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
        pseudo_queries=args.pseudo_queries,
        max_seq_length=args.max_seq_length,
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
