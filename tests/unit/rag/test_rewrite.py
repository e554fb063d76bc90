"""HyDE query rewriting: the rewritten query, and `lmf rag eval --rewrite hyde` with a real
(tiny) model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.rag import index_paths
from lmfoundry.rag.retrieval_eval import EvalQuestion
from lmfoundry.rag.rewrite import hyde_query, hyde_questions


def test_hyde_query_appends_the_model_passage_to_the_question() -> None:
    prompts: list[str] = []

    def generate(prompt: Any) -> str:
        prompts.append(prompt)
        return "  The Seine crosses\nParis.  "

    assert hyde_query("Which river?", generate) == "Which river?\nThe Seine crosses Paris."
    assert prompts[0].endswith("Question: Which river?")
    assert hyde_query("Which river?", lambda prompt: " \n") == "Which river?"  # nothing written
    calls: list[int] = []
    questions = [EvalQuestion("Which river?", ("paris.md",), "c1"), EvalQuestion("Why?", ("cats.md",))]
    rewritten = hyde_questions(questions, lambda prompt: "A passage.", lambda: calls.append(1))
    assert [q.question for q in rewritten] == ["Which river?\nA passage.", "Why?\nA passage."]
    assert [(q.sources, q.chunk_id) for q in rewritten] == [(("paris.md",), "c1"), (("cats.md",), None)]
    assert len(calls) == 2


def test_eval_cli_with_hyde_rewrite(
    long_corpus_dir: Path,
    embedder: Any,
    tiny_reader_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index_paths([long_corpus_dir], "docs", embedder=embedder, progress=False)
    questions = tmp_path / "q.jsonl"
    rows = [{"question": "Which river crosses the capital?", "source": str(long_corpus_dir / "paris.md")}]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    argv = ["rag", "eval", "docs", str(questions), "--config", "bm25", "--rewrite", "hyde"]
    assert (
        main([*argv, "--rewrite-model", str(tiny_reader_dir), "--no-save", "--n-boot", "10", "--json"]) == 0
    )
    table = json.loads(capsys.readouterr().out)
    assert table["rewrite"] == f"hyde ({tiny_reader_dir})" and table["questions"] == 1
    assert [row["config"] for row in table["rows"]] == ["bm25"]
