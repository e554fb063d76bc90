"""Embedder tuning: the split, a run killed after its first checkpoint and resumed, the saved
named embedder, the re-index with it and the before/after report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.embed.sentence import embedders_root, resolve_embedder
from lmfoundry.errors import InvalidInputError
from lmfoundry.rag import index_paths
from lmfoundry.rag.index import open_index
from lmfoundry.rag.retrieval_eval import EvalQuestion
from lmfoundry.rag.tune_embedder import TuneOptions, last_checkpoint, split_questions, tune_embedder

QUESTIONS = {
    "paris.md": ["Which river runs past the French capital?", "How many districts does Paris have?"],
    "cats.md": ["How long do cats sleep each day?", "When do cats hunt?"],
    "banks.txt": ["Who pays interest on savings?", "How is a loan repaid?"],
    "weather.txt": ["Will it rain in the morning?", "How warm will the afternoon be?"],
}


def test_split_is_stable_and_checked() -> None:
    questions = [EvalQuestion(f"question {i}?", ("s",)) for i in range(40)]
    train, test = split_questions(questions, 0.25)
    assert len(train) + len(test) == 40 and 4 <= len(test) <= 16
    _, test_more = split_questions([*questions, EvalQuestion("one more?", ("s",))], 0.25)
    assert set(test) <= set(test_more)  # adding a question moves no other one
    with pytest.raises(InvalidInputError, match="test fraction"):
        split_questions(questions, 1.0)
    with pytest.raises(InvalidInputError, match="split into"):
        split_questions(questions[:1], 0.5)


class Killed(Exception):
    """Stands in for the process being killed right after a checkpoint is written."""


class KillAfterFirstSave:
    """A transformers TrainerCallback (duck-typed) that stops the run at its first checkpoint."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise Killed(f"killed at step {state.global_step}")


def _questions(index: Any, corpus: Path) -> list[EvalQuestion]:
    chunk_of = {c.source: c.chunk_id for c in index.store.chunks()}
    out = []
    for name, texts in QUESTIONS.items():
        source = str((corpus / name).resolve())
        out += [EvalQuestion(t, (source,), chunk_of[source]) for t in texts]
    return out


def test_tuning_resumes_after_a_kill_and_reports_held_out_change(
    long_corpus_dir: Path, embedder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    index_paths([long_corpus_dir], "docs", embedder=embedder, progress=False)
    index = open_index("docs", embedder=embedder)
    questions = _questions(index, long_corpus_dir)
    index.close()
    options = TuneOptions(name="tuned", batch_size=4, save_steps=1, test_fraction=0.4)
    train, _ = split_questions(questions, options.test_fraction)
    with pytest.raises(Killed, match="killed at step 1"):
        tune_embedder("docs", questions, options, configs=("dense",), callbacks=[KillAfterFirstSave()])
    work = embedders_root() / ".work-tuned"
    assert last_checkpoint(work) == work / "checkpoint-1"
    assert not (embedders_root() / "tuned").exists()  # nothing half-written under the final name

    report = tune_embedder("docs", questions, options, configs=("dense",))
    assert report["training"]["resumed_from"] == "checkpoint-1"
    assert report["training"]["steps"] == -(-len(train) // 4)  # one epoch, batches of 4
    assert not work.exists()
    assert resolve_embedder("tuned")[0] == embedders_root() / "tuned"  # a named embedder now
    assert report["store"] == "docs-tuned" and report["reindex"]["chunks_written"] == 4
    dense = report["held_out"]["dense"]["mrr"]
    assert dense["ci_low"] <= dense["diff"] <= dense["ci_high"]
    assert dense["diff"] == pytest.approx(dense["after"] - dense["before"])
    saved = json.loads((embedders_root() / "tuned" / "tune_report.json").read_text())
    assert saved["held_out"] == report["held_out"]

    # a finished run is not trained again; the re-index is incremental
    again = tune_embedder("docs", questions, options, configs=("dense",))
    assert again["training"] == {"skipped": "embedder already trained"}
    assert again["reindex"] == {"chunks_written": 0, "unchanged": 4}


def test_tune_cli_errors(
    corpus_dir: Path, embedder: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index_paths([corpus_dir], "docs", embedder=embedder, progress=False)
    path = tmp_path / "q.jsonl"
    rows = [{"question": f"Where is thing {i}?", "source": "nowhere"} for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["rag", "tune-embedder", "docs", str(path), "--name", "t", "--test-fraction", "0.5"]) == 1
    assert "no training pair" in capsys.readouterr().err
    assert main(["rag", "tune-embedder", "docs", str(path), "--name", "bad/name"]) == 1
    assert "invalid store name" in capsys.readouterr().err


def test_pseudo_queries_train_without_labelled_pairs_and_hold_out_every_question(
    prose_corpus_dir: Path, embedder: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = prose_corpus_dir
    index_paths([corpus], "docs", embedder=embedder, progress=False)
    rows = [
        {"question": "How long do cats sleep?", "source": str((corpus / "cats.txt").resolve())},
        {"question": "What crosses the river in Paris?", "source": str((corpus / "paris.txt").resolve())},
        {"question": "Who pays interest on savings?", "source": str((corpus / "banks.txt").resolve())},
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["rag", "tune-embedder", "docs", str(path), "--name", "ict", "--test-fraction", "1", "--json"]
    assert main([*argv, "--batch-size", "4"]) == 1  # without pseudo-queries nothing would train
    assert "test fraction must be in (0, 1)" in capsys.readouterr().err
    assert main([*argv, "--pseudo-queries", "-1"]) == 1
    assert "pseudo-queries must be >= 0" in capsys.readouterr().err

    assert main([*argv, "--batch-size", "4", "--pseudo-queries", "8", "--max-seq-length", "64"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["questions"] == {"train": 0, "test": 3}  # every question held out
    assert report["training"]["pairs"] == 8 and report["training"]["steps"] == 2
    assert report["reindex"]["chunks_written"] == 3
    assert set(report["held_out"]["hybrid+per-source"]) == {"recall@1", "recall@5", "mrr"}
    tuned = open_index("docs-ict")
    assert tuned.embedder.max_seq_length == 256  # the training limit is not saved with the model
    tuned.close()
