"""Retrieval evaluation: per-question metrics, the table with CIs, the saved table and the warning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.rag import index_paths
from lmfoundry.rag.index import open_index, store_path
from lmfoundry.rag.retrieval_eval import (
    ConfigResult,
    EvalQuestion,
    evaluate,
    keyword_query,
    load_questions,
    ndcg,
    question_scores,
    reranker_warning,
    save_table,
    split_config,
    summarize,
)


def test_each_source_counts_once() -> None:
    ranking = ["a", "a", "b", "c"]
    scores = question_scores(ranking, ["b"])
    assert scores["recall@1"] == 0.0 and scores["recall@5"] == 1.0 and scores["mrr"] == pytest.approx(1 / 3)
    # a second chunk of a relevant source adds no gain: nDCG of [b, b] is that of [b]
    assert ndcg(["b", "b", "c"], ["b"], 10) == ndcg(["b", "x", "c"], ["b"], 10) == 1.0
    # two relevant sources: the ideal ranks both first
    assert ndcg(["x", "b", "c"], ["b", "c"], 10) == pytest.approx((1 / 1.585 + 1 / 2) / (1 + 1 / 1.585), 1e-3)
    assert question_scores(["x", "y"], ["b"]) == {
        "recall@1": 0.0,
        "recall@5": 0.0,
        "recall@10": 0.0,
        "mrr": 0.0,
        "ndcg@10": 0.0,
    }


def test_keyword_rewrite_drops_question_words() -> None:
    assert keyword_query("How do I make a generator function?") == "make generator function"
    assert keyword_query("What is it?") == "What is it?"  # nothing left: the question itself


def test_question_file_formats_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    rows = [
        {"question": "Where is Paris?", "source": "paris.md", "chunk_id": "c1"},
        {"question": "Cats?", "sources": ["a", "b"]},
        {"question": "What does assert do?", "topic": "assert", "answer_keywords": ["x"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    questions = load_questions(path)
    assert questions[0] == EvalQuestion("Where is Paris?", ("paris.md",), "c1")
    assert questions[1].sources == ("a", "b")
    assert questions[2].sources == ("python-reference:assert",)
    path.write_text(json.dumps({"question": "Where?"}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"q.jsonl:1: expected \"source\""):
        load_questions(path)
    path.write_text(json.dumps({"source": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match='non-empty "question"'):
        load_questions(path)
    with pytest.raises(LmfError, match="no question file"):
        load_questions(tmp_path / "missing.jsonl")
    with pytest.raises(InvalidInputError, match="unknown retrieval mode 'sparse'"):
        split_config("sparse+mmr")
    with pytest.raises(InvalidInputError, match="MMR lambda"):
        split_config("hybrid+mmr:2")
    assert split_config("dense+per-source:2") == ("dense", "per-source:2")


def _result(config: str, mrrs: list[float]) -> ConfigResult:
    rows = [
        {
            "recall@1": float(m == 1.0),
            "recall@5": float(m > 0),
            "recall@10": float(m > 0),
            "mrr": m,
            "ndcg@10": m,
        }
        for m in mrrs
    ]
    return ConfigResult(config, rows, [])


def test_warning_only_when_the_reranker_measured_worse(tmp_path: Path) -> None:
    base = _result("hybrid", [1.0, 1.0, 0.5, 1.0])
    worse = _result("hybrid+mmr", [0.5, 0.5, 0.25, 0.5])
    better = _result("hybrid+per-source", [1.0, 1.0, 1.0, 1.0])
    rows = summarize([base, worse, better], n_boot=200)
    assert "mrr_vs_no_rerank" not in rows[0]
    assert rows[1]["mrr_vs_no_rerank"]["diff"] == pytest.approx(-0.4375)
    (tmp_path / "retrieval_eval.json").write_text(json.dumps({"questions": 4, "rows": rows}))
    warning = reranker_warning(tmp_path, "hybrid", "mmr")
    assert (
        warning is not None and "MRR 0.438 vs 0.875" in warning and "CI of the difference below 0" in warning
    )
    assert reranker_warning(tmp_path, "hybrid", "per-source") is None  # measured better
    assert reranker_warning(tmp_path, "hybrid", None) is None
    assert reranker_warning(tmp_path, "dense", "mmr") is None  # not measured
    assert reranker_warning(tmp_path / "nowhere", "hybrid", "mmr") is None


def _questions(path: Path) -> Path:
    rows = [
        {"question": "Which river flows through the French capital?", "source": "paris.md"},
        {"question": "How many hours a day does a cat sleep?", "source": "cats.md"},
        {"question": "Who lends money and pays interest on savings?", "source": "banks.txt"},
        {"question": "Will it rain tomorrow morning?", "source": "weather.txt"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_evaluate_a_store_and_warn_in_search(
    long_corpus_dir: Path, embedder: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index_paths([long_corpus_dir], "docs", embedder=embedder, progress=False)
    questions = load_questions(_questions(tmp_path / "q.jsonl"))
    questions = [
        EvalQuestion(q.question, (str((long_corpus_dir / q.sources[0]).resolve()),)) for q in questions
    ]
    index = open_index("docs", embedder=embedder)
    try:
        table = evaluate(index, questions, ["dense", "bm25", "hybrid+per-source"], n_boot=100)
        saved = save_table(index, table)
    finally:
        index.close()
    assert [r["config"] for r in table["rows"]] == ["dense", "bm25", "hybrid+per-source"]
    dense = table["rows"][0]
    assert dense["questions"] == 4 and dense["recall@10"]["mean"] == 1.0  # every source is in a top 10 of 4
    assert dense["recall@1"]["ci_low"] <= dense["recall@1"]["mean"] <= dense["recall@1"]["ci_high"]
    assert saved == store_path("docs") / "retrieval_eval.json"

    rows = json.loads(saved.read_text())["rows"]
    rows.append({**rows[1], "config": "bm25+mmr", "mrr": {"mean": -1.0}})  # a reranker measured worse
    saved.write_text(json.dumps({"questions": 4, "rows": rows}))
    assert main(["rag", "search", "docs", "river Seine", "--mode", "bm25", "--rerank", "mmr", "--json"]) == 0
    out = capsys.readouterr()
    assert "warning: --rerank mmr measured worse than no reranker" in out.err
    assert json.loads(out.out)["hits"]


def test_eval_cli_table_and_errors(
    corpus_dir: Path, embedder: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index_paths([corpus_dir], "docs", embedder=embedder, progress=False)
    path = tmp_path / "q.jsonl"
    source = str((corpus_dir / "paris.md").resolve())
    path.write_text(json.dumps({"question": "What is the capital of France?", "source": source}) + "\n")
    assert main(["rag", "eval", "docs", str(path), "--config", "bm25", "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| configuration | recall@1 |") and "| bm25 | 1.000 [1.00, 1.00]" in out
    assert (store_path("docs") / "retrieval_eval.json").is_file()
    assert main(["rag", "search", "docs", "capital", "-k", "3", "--rerank", "none", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["hits"]) == 3  # `none` is accepted: no reranker
    assert main(["rag", "eval", "docs", str(path), "--config", "bm25+nope"]) == 1
    assert "nope" in capsys.readouterr().err
    assert main(["rag", "eval", "nostore", str(path)]) == 1
    assert "no RAG store named 'nostore'" in capsys.readouterr().err
    argv = ["rag", "eval", "docs", str(path), "--config", "bm25", "--no-save", "--json", "--length-prior"]
    assert main([*argv, "0"]) == 0
    assert json.loads(capsys.readouterr().out)["length_prior"] == 0.0
    for bad in ("-0.1", "much"):
        with pytest.raises(SystemExit):
            main([*argv, bad])
        assert "the length prior must be a number >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["rag", "search", "docs", "capital", "--length-prior", "-1"])
    assert "the length prior must be a number >= 0" in capsys.readouterr().err
