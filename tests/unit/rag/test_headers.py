"""Contextual chunk headers: title and section path in front of the embedded text only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lmfoundry.rag import index_paths
from lmfoundry.rag.documents import Document
from lmfoundry.rag.headers import contextual_text, section_path
from lmfoundry.rag.index import embedded_text, open_index
from lmfoundry.types import Chunk

TEXT = "# Guide\n\nIntro.\n\n## Install\n\n### Linux\n\nRun apt.\n\n## Use\n\nCall it.\n"


def test_section_path_follows_heading_levels() -> None:
    assert section_path(TEXT, TEXT.index("Intro")) == ["Guide"]
    assert section_path(TEXT, TEXT.index("Run apt")) == ["Guide", "Install", "Linux"]
    assert section_path(TEXT, TEXT.index("Call it")) == ["Guide", "Use"]  # a sibling closes Linux
    doc = Document("/x/guide.md", TEXT, {"topic": "guide-topic"})
    start = TEXT.index("Run apt")
    chunk = Chunk("c", doc.source, "Run apt.", start, start + 8)
    assert contextual_text(doc, chunk) == "guide-topic > Guide > Install > Linux\nRun apt."
    plain = Document("/x/notes.txt", "Run apt.", {})
    assert contextual_text(plain, Chunk("c", plain.source, "Run apt.", 0, 8)) == "notes.txt\nRun apt."


def test_store_with_headers_embeds_them_and_keeps_the_text(corpus_dir: Path, embedder: Any) -> None:
    index_paths([corpus_dir], "plain", embedder=embedder, progress=False)
    index_paths([corpus_dir], "headed", embedder=embedder, headers=True, progress=False)
    plain, headed = open_index("plain", embedder=embedder), open_index("headed", embedder=embedder)
    try:
        assert headed.config.headers and not plain.config.headers
        by_source = {c.source: c for c in headed.store.chunks()}
        paris = next(c for s, c in by_source.items() if s.endswith("paris.md"))
        assert paris.text.startswith("# Paris") and paris.metadata["header"] == "paris.md > Paris"
        assert embedded_text(paris) == "paris.md > Paris\n" + paris.text
        plain_paris = next(c for c in plain.store.chunks() if c.source == paris.source)
        assert "header" not in plain_paris.metadata and embedded_text(plain_paris) == plain_paris.text
        v_headed = headed.store.vectors([paris.chunk_id])[0]
        v_plain = plain.store.vectors([plain_paris.chunk_id])[0]
        assert not np.allclose(v_headed, v_plain)
    finally:
        plain.close()
        headed.close()
    again = index_paths([corpus_dir], "headed", embedder=embedder, progress=False)  # setting kept
    assert again.unchanged == 3 and again.chunks_written == 0
