"""RAG test fixtures: a tiny cross-encoder, a tiny reader, corpora (the embedder is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

WORDS = [
    "the",
    "a",
    "is",
    "of",
    "to",
    "and",
    "in",
    "what",
    "does",
    "assert",
    "statement",
    "optimization",
    "debug",
    "python",
    "cat",
    "dog",
    "fox",
    "paris",
    "france",
    "capital",
    "river",
    "bank",
    "money",
    "fish",
    "swim",
    "weather",
    "sunny",
    "rain",
]


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny BERT sequence classifier (1 label) with a WordPiece vocab, CrossEncoder-loadable."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny_cross_encoder")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz?.,"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_reader_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with a 4096-token context, so a prompt with several documents fits."""
    from tiny import build_model, build_tokenizer

    path = tmp_path_factory.mktemp("tiny_reader")
    tokenizer = build_tokenizer()
    build_model("llama", vocab_size=len(tokenizer), max_position_embeddings=4096).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A few small text files about different things."""
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "cats.txt").write_text(
        "Cats are small felines. A cat sleeps most of the day.\n", encoding="utf-8"
    )
    (root / "paris.md").write_text(
        "# Paris\n\nParis is the capital of France, on the river Seine.\n", encoding="utf-8"
    )
    (root / "sub" / "banks.txt").write_text("A bank keeps money safe and lends it out.\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def pyref_home(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    """An LMF_HOME whose store `pyref` holds the whole built-in Python reference, indexed once
    per session (the slow part of the quality tests) and shared by them read-only."""
    import time

    from lmfoundry.rag import index_paths

    home = tmp_path_factory.mktemp("pyref_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LMF_HOME", str(home))
        started = time.perf_counter()
        report = index_paths(["builtin:python-reference"], "pyref", progress=False)
        print(f"indexed {report.chunks_written} chunks in {time.perf_counter() - started:.1f}s")
    return home


LONG_DOCS = {
    "cats.md": "# Cats\n\n## Sleep\n\nA cat sleeps for most of the day, often twelve to sixteen hours, and hunts at "
    "dawn and dusk. Kittens sleep even longer while they grow, and an old cat naps in warm sunny places "
    "near a window.\n",
    "paris.md": "# Paris\n\n## Geography\n\nParis is the capital of France and lies on the river Seine in "
    "the north of the country. The city has twenty districts arranged in a spiral, and many bridges cross "
    "the river between its banks.\n",
    "banks.txt": "A bank keeps the money of its customers safe, pays interest on savings accounts and lends "
    "money to people and companies who repay the loan over several years with interest added to each "
    "monthly payment.\n",
    "weather.txt": "The weather forecast says rain in the morning and sunny spells in the afternoon, with "
    "a light wind from the west and temperatures rising to eighteen degrees before clouds return in the "
    "evening over the hills.\n",
}


@pytest.fixture
def long_corpus_dir(tmp_path: Path) -> Path:
    """Four documents of 30+ words each (enough for test-set generation and embedder tuning)."""
    root = tmp_path / "long"
    root.mkdir()
    for name, text in LONG_DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


PROSE_DOCS = {
    "cats.txt": "A cat sleeps for most of the day and hunts small animals at dawn. Kittens sleep even "
    "longer than adult cats while they are still growing up. An old cat likes to nap in warm and sunny "
    "places near a window.",
    "paris.txt": "Paris is the capital of France and lies on the river Seine. The city has twenty "
    "districts that are arranged in a spiral around its centre. Many old stone bridges cross the river "
    "between the two banks of the city.",
    "banks.txt": "A bank keeps the money of its customers safe in accounts. It pays interest on savings "
    "and charges interest on the loans it makes. People repay a loan in monthly payments over several "
    "years of their working life.",
}


@pytest.fixture
def prose_corpus_dir(tmp_path: Path) -> Path:
    """Three documents of three prose sentences each (inverse-cloze pseudo-queries need them)."""
    root = tmp_path / "prose"
    root.mkdir()
    for name, text in PROSE_DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root
