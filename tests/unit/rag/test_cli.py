from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_index_search_stores_ask(
    corpus_dir: Path, embedder: Any, tiny_reader_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rag", "index", str(corpus_dir), "--store", "docs", "--chunk-size", "64", "--json"]) == 0
    report = _json(capsys)
    assert len(report["added"]) == 3 and report["texts_embedded"] == 3

    assert main(["rag", "search", "docs", "capital of France", "-k", "2", "--json"]) == 0
    hits = _json(capsys)["hits"]
    assert len(hits) == 2 and set(hits[0]) == {"source", "chunk_id", "text", "score"}
    assert hits[0]["source"].endswith("paris.md")

    assert main(["rag", "search", "docs", "bank", "--mode", "bm25", "--rerank", "mmr", "--json"]) == 0
    assert _json(capsys)["hits"][0]["source"].endswith("banks.txt")

    assert main(["rag", "search", "docs", "capital", "--where", "format=markdown", "--json"]) == 0
    assert {h["source"] for h in _json(capsys)["hits"]} == {str((corpus_dir / "paris.md").resolve())}

    assert main(["rag", "stores", "--json"]) == 0
    assert [s["name"] for s in _json(capsys)["stores"]] == ["docs"]
    assert main(["rag", "stores"]) == 0
    assert "docs\tlancedb\tall-MiniLM-L6-v2\tchunk 64/" in capsys.readouterr().out

    args = ["rag", "ask", "docs", "What is the capital of France?", "--model", str(tiny_reader_dir)]
    assert main([*args, "--max-new-tokens", "6", "-k", "2", "--json"]) == 0
    out = _json(capsys)
    assert set(out) >= {"answer", "citations", "hits"} and len(out["hits"]) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rag", "search", "nostore", "q"], "no RAG store named 'nostore'"),
        (["rag", "index", "/no/such/dir", "--store", "x"], "no such file"),
        (["rag", "search", "nostore", "q", "--where", "novalue"], "KEY=VALUE"),
    ],
)
def test_errors_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
