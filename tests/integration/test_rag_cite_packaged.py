"""`lmf rag ask` with the packaged 135M reader cites the right reference topic (offline).

The reader rarely writes `[n]` itself; the default citation mode then attributes its answer to
the retrieved document most similar to it, marked `"attributed": true`.
"""

from __future__ import annotations

import json

import pytest

from lmfoundry.cli.main import main

QUESTION = "What does the assert statement do when optimization is requested?"


@pytest.mark.integration
def test_ask_cites_the_assert_topic(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rag", "index", "builtin:python-reference", "--store", "pycite", "--json"]) == 0
    capsys.readouterr()
    assert main(["rag", "ask", "pycite", QUESTION, "--max-new-tokens", "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"].strip()
    sources = [c["source"] for c in out["citations"]]
    assert "python-reference:assert" in sources, out
    for c in out["citations"]:
        assert c["source"] == out["hits"][c["document"]]["source"]
        assert c["attributed"] is (c["method"] == "similarity")
