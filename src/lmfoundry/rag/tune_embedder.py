"""Fine-tune a store's embedder on (question, chunk) pairs and measure it on questions it never saw.

Steps of `tune_embedder`:
  1. split the questions by a hash of their text (stable as the file grows): `test_fraction`
     held out, the rest trains;
  2. training triples (question, its chunk, a hard negative): the negative is the best-ranked
     chunk of another source under the current embedder (dense search), so the model learns
     exactly the confusions it makes; MultipleNegativesRankingLoss also uses every other
     positive in the batch as a negative (in-batch negatives, no duplicate anchors in a batch);
  3. train with sentence-transformers' trainer, checkpointing every `save_steps` steps under
     `$LMF_HOME/embedders/.work-NAME`; a killed run resumes from the last checkpoint;
  4. save the model as the named embedder `$LMF_HOME/embedders/NAME` (atomically: the folder
     appears complete or not at all), usable as `lmf rag index --embedder NAME`;
  5. index the store's sources into `STORE-NAME` with it, with the store's chunking and header
     settings (incremental: a killed re-index resumes and unchanged sources cost nothing);
  6. evaluate before (the original store) and after (the new one) on the held-out questions,
     with paired bootstrap CIs of the differences.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lmfoundry.embed.sentence import DEFAULT_EMBEDDER, embedders_root, resolve_embedder
from lmfoundry.errors import InvalidInputError
from lmfoundry.fsutil import atomic_dir, atomic_write_text
from lmfoundry.quiet import quiet_loading
from lmfoundry.rag.index import RagIndex, embedded_text, index_paths, open_index, store_path
from lmfoundry.rag.pseudo_queries import MAX_WORDS, MIN_WORDS, pseudo_query_rows
from lmfoundry.rag.retrieval_eval import EvalQuestion, run_config
from lmfoundry.rag.retrieve import dense_search
from lmfoundry.stats import bootstrap_difference

REPORT_FILE = "tune_report.json"
COMPARE_CONFIGS = ("dense", "hybrid", "hybrid+per-source")


@dataclass(frozen=True)
class TuneOptions:
    """How to tune (the CLI flags of `lmf rag tune-embedder`)."""

    name: str
    """Name of the new embedder ($LMF_HOME/embedders/NAME) and suffix of the new store."""
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 2e-5
    hard_negatives: bool = True
    """Add the best-ranked chunk of another source as each question's explicit negative."""
    test_fraction: float = 0.3
    """Share of the questions held out for the before/after comparison (never trained on); 1.0
    holds out every question (only with `pseudo_queries`: then nothing labelled is trained on)."""
    seed: int = 0
    save_steps: int = 20
    max_seq_length: int | None = None
    """Truncate training texts to this many tokens (None: the embedder's own limit); training
    cost grows with it, and on a CPU 128 is about half the time of 256."""
    pseudo_queries: int = 0
    """Also train on this many Inverse Cloze pairs made from the store's own chunks
    (`rag.pseudo_queries`): no question file or generator model needed for them."""


def split_questions(
    questions: Sequence[EvalQuestion], test_fraction: float, seed: int = 0, *, allow_all_test: bool = False
) -> tuple[list[EvalQuestion], list[EvalQuestion]]:
    """(train, test) by a hash of each question's text: a question stays on its side when
    others are added or removed. `allow_all_test` accepts 1.0 (every question held out)."""
    if allow_all_test and test_fraction == 1.0:
        if not questions:
            raise InvalidInputError("no questions to evaluate on")
        return [], list(questions)
    if not 0.0 < test_fraction < 1.0:
        raise InvalidInputError(f"test fraction must be in (0, 1), got {test_fraction}")

    def held_out(q: EvalQuestion) -> bool:
        digest = hashlib.sha256(f"{seed}:{q.question}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction

    train = [q for q in questions if not held_out(q)]
    test = [q for q in questions if held_out(q)]
    if not train or not test:
        raise InvalidInputError(
            f"{len(questions)} questions split into {len(train)} to train and {len(test)} to test: "
            "give more questions or another --test-fraction"
        )
    return train, test


def training_rows(
    index: RagIndex, train: Sequence[EvalQuestion], hard_negatives: bool
) -> list[dict[str, str]]:
    """(anchor, positive[, negative]) rows: the question, the text of the chunk it was written
    from (as the embedder reads it; for a question labelled by source only, that source's
    best-ranked chunk among the dense top 10) and the best-ranked chunk of another source."""
    chunks = {c.chunk_id: c for c in index.store.chunks()}
    rows = []
    for q in train:
        hits = dense_search(index, q.question, 10)
        chunk = chunks.get(q.chunk_id or "") or next(
            (h.chunk for h in hits if h.chunk.source in q.sources), None
        )
        if chunk is None:
            continue
        row = {"anchor": q.question, "positive": embedded_text(chunk)}
        if hard_negatives:
            negative = next((h.chunk for h in hits if h.chunk.source not in q.sources), None)
            if negative is None:
                continue
            row["negative"] = embedded_text(negative)
        rows.append(row)
    if not rows:
        raise InvalidInputError(
            'no training pair: no training question has a "chunk_id" of this store (as `lmf rag '
            "testset` writes) or a labelled source among its dense top 10"
        )
    return rows


def _all_training_rows(
    index: RagIndex, train: Sequence[EvalQuestion], options: TuneOptions, log: Callable[[str], None]
) -> list[dict[str, str]]:
    """The labelled questions' rows, then the pseudo-queries' (either may be absent, not both)."""
    rows: list[dict[str, str]] = []
    if train:
        log(f"mining hard negatives for {len(train)} training questions")
        rows += training_rows(index, train, options.hard_negatives)
    if options.pseudo_queries:
        log(f"making {options.pseudo_queries} pseudo-queries (inverse cloze) from the store's chunks")
        pseudo = pseudo_query_rows(index, options.pseudo_queries, options.seed, options.hard_negatives)
        if not pseudo:
            raise InvalidInputError(
                "no pseudo-query: no chunk of this store has a prose sentence of "
                f"{MIN_WORDS}-{MAX_WORDS} words and enough text around it"
            )
        rows += pseudo
    return rows


def _loss(model: Any) -> Any:
    """MultipleNegativesRankingLoss (its module moved in sentence-transformers 6)."""
    import importlib

    try:
        losses = importlib.import_module("sentence_transformers.sentence_transformer.losses")
    except ImportError:  # sentence-transformers < 6
        losses = importlib.import_module("sentence_transformers.losses")
    return losses.MultipleNegativesRankingLoss(model)


def last_checkpoint(work: Path) -> Path | None:
    """The newest complete checkpoint in the work folder (trainer writes `checkpoint-STEP`)."""
    done = [p for p in work.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.rsplit("-", 1)[1]), default=None)


def _training_args(work: Path, options: TuneOptions) -> Any:
    from sentence_transformers import SentenceTransformerTrainingArguments

    return SentenceTransformerTrainingArguments(
        output_dir=str(work),
        num_train_epochs=options.epochs,
        per_device_train_batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        warmup_steps=0.1,  # a float: the share of the steps (transformers 5)
        batch_sampler="no_duplicates",
        save_strategy="steps",
        save_steps=options.save_steps,
        save_total_limit=2,
        logging_steps=max(options.save_steps, 1),
        report_to="none",
        seed=options.seed,
        use_cpu=True,
        disable_tqdm=True,
    )


def train_embedder(
    base: Path,
    rows: Sequence[dict[str, str]],
    work: Path,
    final: Path,
    options: TuneOptions,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train from `base` (or resume from the newest checkpoint in `work`) and save to `final`."""
    import datasets
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from transformers import PrinterCallback

    resume = last_checkpoint(work)
    with quiet_loading():
        model = SentenceTransformer(str(base), device="cpu")
    full_length = model.max_seq_length
    if options.max_seq_length:
        model.max_seq_length = options.max_seq_length
    trainer = SentenceTransformerTrainer(
        model=model,
        args=_training_args(work, options),
        train_dataset=datasets.Dataset.from_list(list(rows)),
        loss=_loss(model),
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # it prints each log dict on stdout (breaks --json)
    with quiet_loading():  # no "Writing model shards" bar at each checkpoint, no "Loading weights" on resume
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    model.max_seq_length = full_length  # the saved embedder reads whole chunks again
    with quiet_loading(), atomic_dir(final) as tmp:  # no "Writing model shards" bar
        model.save(str(tmp), create_model_card=False)
    return {
        "pairs": len(rows),
        "steps": int(output.global_step),
        "train_loss": round(float(output.training_loss), 4),
        "resumed_from": resume.name if resume else None,
    }


def _differences(before: Any, after: Any) -> dict[str, Any]:
    out = {}
    for metric in ("recall@1", "recall@5", "mrr"):
        a = [s[metric] for s in before.per_question]
        b = [s[metric] for s in after.per_question]
        diff = bootstrap_difference(a, b)
        out[metric] = {"before": sum(a) / len(a), "after": sum(b) / len(b), **diff}
    return out


def tune_embedder(
    store: str,
    questions: Sequence[EvalQuestion],
    options: TuneOptions,
    *,
    configs: Sequence[str] = COMPARE_CONFIGS,
    callbacks: Sequence[Any] = (),
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Split, mine, train (resumably), save, re-index and compare; the report (also saved as
    `tune_report.json` in the embedder's folder)."""
    final = embedders_root() / options.name
    new_store = f"{store}-{options.name}"
    store_path(new_store)  # the name is valid before any work starts
    if options.pseudo_queries < 0:
        raise InvalidInputError(f"pseudo-queries must be >= 0, got {options.pseudo_queries}")
    train, test = split_questions(
        questions, options.test_fraction, options.seed, allow_all_test=options.pseudo_queries > 0
    )
    index = open_index(store)
    try:
        base = resolve_embedder(None if index.config.embedder == DEFAULT_EMBEDDER else index.config.embedder)
        origins = sorted({r.origin for r in index.store.sources().values()})
        training: dict[str, Any] = {"skipped": "embedder already trained"}
        if not (final / "config.json").is_file():
            rows = _all_training_rows(index, train, options, log)
            log(f"training on {len(rows)} pairs ({options.epochs} epoch(s))")
            work = embedders_root() / f".work-{options.name}"
            training = train_embedder(base[0], rows, work, final, options, callbacks)
            shutil.rmtree(work, ignore_errors=True)
        log(f"indexing {len(origins)} origin(s) into store {new_store!r} with the tuned embedder")
        reindex = index_paths(
            origins,
            new_store,
            embedder=str(final),
            chunk_size=index.config.chunk_size,
            overlap=index.config.overlap,
            tokenizer=index.config.tokenizer,
            headers=index.config.headers,
            progress=False,
        )
        log(f"evaluating {len(test)} held-out questions before and after")
        before = [run_config(index, test, c) for c in configs]
    finally:
        index.close()
    tuned = open_index(new_store)
    try:
        after = [run_config(tuned, test, c) for c in configs]
    finally:
        tuned.close()
    report = {
        "embedder": options.name,
        "path": str(final),
        "store": new_store,
        "options": asdict(options),
        "questions": {"train": len(train), "test": len(test)},
        "training": training,
        "reindex": {"chunks_written": reindex.chunks_written, "unchanged": reindex.unchanged},
        "held_out": {b.config: _differences(b, a) for b, a in zip(before, after, strict=True)},
    }
    atomic_write_text(final / REPORT_FILE, json.dumps(report, indent=2))
    return report
