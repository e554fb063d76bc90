"""The studio served around the tiny Llama on a real uvicorn (127.0.0.1, free port), with a RAG store
(bm25 retrieval at query time; the store's word-hash embedder attributes answers), a runs folder
and a votes file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import lmfoundry
from lmfoundry.serve.app import create_app
from lmfoundry.serve.http_server import running_server
from lmfoundry.serve.service import ServedModel, ServeOptions
from lmfoundry.studio.config import StudioConfig

NAME = "tiny"
# The chunk carries markup: opening it in the page must show the tags, never run them.
DOC = (
    "Paris is the capital of France. The Seine runs through it. "
    '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>\n'
)
OTHER_DOC = "Berlin is the capital of Germany. The Spree runs through it.\n"


@dataclass
class Studio:
    url: str
    home: Path
    runs: Path
    preferences: Path


class WordHashEmbedder:
    """Bag-of-words vectors hashed into 32 dimensions: enough to build a store in milliseconds (the
    studio tests retrieve with bm25; the studio is under test here, not the embedder)."""

    model_id = "word-hash-32"
    dimension = 32
    max_seq_length = 256

    def __init__(self) -> None:
        from tiny import build_tokenizer

        self.tokenizer = build_tokenizer()

    def encode(self, texts: Any) -> Any:
        import zlib

        import numpy as np

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, zlib.crc32(word.encode()) % self.dimension] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


@pytest.fixture(scope="session")
def studio_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from lmfoundry.rag.index import index_paths

    home = tmp_path_factory.mktemp("studio_home")
    docs = tmp_path_factory.mktemp("docs")
    (docs / "france.txt").write_text(DOC, encoding="utf-8")
    (docs / "germany.txt").write_text(OTHER_DOC, encoding="utf-8")
    previous = os.environ.get("LMF_HOME")
    os.environ["LMF_HOME"] = str(home)
    try:
        index_paths([docs], "docs", embedder=WordHashEmbedder(), progress=False)
    finally:
        if previous is not None:
            os.environ["LMF_HOME"] = previous
    yield home


@pytest.fixture
def lmf_home(studio_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Overrides the empty per-test store: every studio test sees the module's store with its RAG
    index, whose embedder (named by the store, loaded when an answer is attributed) is the word hash."""
    from lmfoundry.rag import index

    real = index.load_embedder
    monkeypatch.setenv("LMF_HOME", str(studio_home))
    monkeypatch.setattr(
        index, "load_embedder", lambda name=None: WordHashEmbedder() if name == "word-hash-32" else real(name)
    )
    return studio_home


@pytest.fixture(scope="module")
def studio(
    tiny_long_dir: Path, studio_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Studio]:
    """The tiny Llama with a long context: the tools mode's prompt lists the tools."""
    options = ServeOptions(embedder=None, max_tokens=160, default_max_tokens=16)
    served = ServedModel.create(
        lmfoundry.load(str(tiny_long_dir), backend="transformers"), name=NAME, options=options
    )
    root = tmp_path_factory.mktemp("studio")
    config = StudioConfig(
        runs_root=root / "runs", preferences=root / "votes" / "preferences.jsonl", tracking=False
    )  # no MLflow import in the server: its registry has its own test
    app = create_app(served, options, studio=config, close_on_shutdown=True)
    with running_server(app) as url:
        yield Studio(url, studio_home, config.runs_root, config.preferences_path())


@pytest.fixture(scope="module")
def served(tiny_llama_dir: Path) -> Iterator[ServedModel]:
    options = ServeOptions(embedder=None, max_tokens=64, default_max_tokens=8)
    model = ServedModel.create(
        lmfoundry.load(str(tiny_llama_dir), backend="transformers"), name=NAME, options=options
    )
    yield model
    model.close()


@pytest.fixture
def make_client(served: ServedModel, tmp_path: Path) -> Any:
    """An in-process client of the app with the studio configured by `StudioConfig(**fields)`."""
    from fastapi.testclient import TestClient

    def make(api_keys: list[str] | None = None, **fields: Any) -> Any:
        fields.setdefault("runs_root", tmp_path / "runs")
        fields.setdefault("preferences", tmp_path / "preferences.jsonl")
        fields.setdefault("tracking", False)
        return TestClient(
            create_app(served, ServeOptions(embedder=None), api_keys=api_keys, studio=StudioConfig(**fields))
        )

    return make
