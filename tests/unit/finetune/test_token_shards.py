"""Pretraining data: sources of every kind, sharded tokenization (resume, reuse), packing, mixing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.finetune.data.packing import MixedBlocks, PackedBlocks, mix_counts
from lmfoundry.finetune.data.text_sources import (
    TextSource,
    documents,
    fingerprint,
    in_validation,
    parse_sources,
    split_documents,
)
from lmfoundry.finetune.data.token_shards import build_shards, load_tokens, read_manifest
from lmfoundry.finetune.data.tokenizer_train import batch_encoder, tokenizer_hash, train_bpe

TEXTS = [f"document {i}: " + "word " * (i % 7 + 1) for i in range(30)]


class CountingEncoder:
    """Encodes each character as its code point; counts the documents it was handed."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, texts: list[str]) -> list[list[int]]:
        self.seen += len(texts)
        return [[ord(c) for c in text] for text in texts]


def _flat(folder: Path) -> list[int]:
    return [int(t) for shard in load_tokens(folder) for t in shard]


def _expected(texts: list[str], eos: int = 0) -> list[int]:
    return [t for text in texts for t in [*(ord(c) for c in text), eos]]


def test_every_source_kind_yields_its_documents(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"body": t}) + "\n" for t in TEXTS[:5]), encoding="utf-8")
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": TEXTS[:5]}), parquet)
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, text in enumerate(TEXTS[:5]):
        (folder / f"{i:02d}.txt").write_text(text, encoding="utf-8")
    (folder / "skip.bin").write_bytes(b"\x00")

    assert list(documents(TextSource(str(jsonl), text_field="body"))) == TEXTS[:5]
    assert list(documents(TextSource(str(parquet)))) == TEXTS[:5]
    assert list(documents(TextSource(str(folder)))) == TEXTS[:5]
    assert list(documents(TextSource(str(folder / "01.txt")))) == [TEXTS[1]]
    streamed = TextSource("hf:json", text_field="body", data_files=str(jsonl))
    assert list(documents(streamed)) == TEXTS[:5]
    reference = list(documents(TextSource("builtin:python-reference")))
    assert len(reference) > 50 and any("for_stmt" in doc for doc in reference)


def test_bad_sources_name_the_problem(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "ok"}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="line 2.*'text'"):
        list(documents(TextSource(str(bad_json))))
    (tmp_path / "x.csv").write_text("a\n", encoding="utf-8")
    with pytest.raises(LmfError, match="unsupported pretraining source type '.csv'"):
        documents(TextSource(str(tmp_path / "x.csv")))
    with pytest.raises(LmfError, match="not found"):
        documents(TextSource(str(tmp_path / "nope.jsonl")))
    with pytest.raises(LmfError, match="unknown builtin"):
        documents(TextSource("builtin:novels"))
    with pytest.raises(InvalidInputError, match="named 'bad'"):
        parse_sources([{"path": str(bad_json)}, {"path": str(tmp_path / "sub" / "bad.jsonl")}], "")


def test_documents_split_whole_and_stably(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    source = TextSource(str(path))
    train = list(split_documents(source, "train", 0.3, seed=1))
    held = list(split_documents(source, "validation", 0.3, seed=1))
    assert sorted(train + held) == sorted(TEXTS) and not set(train) & set(held)
    assert 0 < len(held) < len(train)
    assert held == [t for i, t in enumerate(TEXTS) if in_validation(i, 0.3, 1)]
    assert list(split_documents(source, "validation", 0.3, seed=2)) != held


def test_shards_hold_whole_documents_separated_by_eos(tmp_path: Path) -> None:
    manifest = build_shards(TEXTS, CountingEncoder(), 0, tmp_path / "s", {"v": 1}, shard_tokens=100)
    assert manifest.complete and len(manifest.shards) > 3
    assert _flat(tmp_path / "s") == _expected(TEXTS)
    # every shard ends with a document's EOS
    assert all(int(shard[-1]) == 0 for shard in load_tokens(tmp_path / "s"))
    assert sum(s["documents"] for s in manifest.shards) == len(TEXTS)


def test_killed_tokenization_resumes_where_it_stopped(tmp_path: Path) -> None:
    first = CountingEncoder()
    partial = build_shards(TEXTS, first, 0, tmp_path / "s", {"v": 1}, shard_tokens=100, max_shards=2)
    assert not partial.complete and len(partial.shards) == 2
    with pytest.raises(LmfError, match="no complete tokenization"):
        load_tokens(tmp_path / "s")
    # a half-written shard of the killed run lies around: it is replaced, never read
    (tmp_path / "s" / ".shard_00002.bin.tmp").write_bytes(b"junk")
    second = CountingEncoder()
    done = build_shards(TEXTS, second, 0, tmp_path / "s", {"v": 1}, shard_tokens=100)
    assert done.complete
    assert second.seen == len(TEXTS) - partial.documents  # only the rest was tokenized again
    assert _flat(tmp_path / "s") == _expected(TEXTS)


def test_unchanged_fingerprint_reuses_and_a_changed_one_rebuilds(tmp_path: Path) -> None:
    build_shards(TEXTS, CountingEncoder(), 0, tmp_path / "s", {"v": 1}, shard_tokens=100)
    again = CountingEncoder()
    build_shards(TEXTS, again, 0, tmp_path / "s", {"v": 1}, shard_tokens=100)
    assert again.seen == 0
    changed = CountingEncoder()
    build_shards(TEXTS[:3], changed, 0, tmp_path / "s", {"v": 2}, shard_tokens=100)
    assert changed.seen == 3 and _flat(tmp_path / "s") == _expected(TEXTS[:3])
    assert read_manifest(tmp_path / "s").fingerprint == {"v": 2}  # type: ignore[union-attr]


def test_source_fingerprint_follows_the_file(tmp_path: Path) -> None:
    import os

    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "a"}\n', encoding="utf-8")
    before = fingerprint(TextSource(str(path)))
    assert fingerprint(TextSource(str(path))) == before
    path.write_text('{"text": "ab"}\n', encoding="utf-8")
    os.utime(path, ns=(1, 1))
    assert fingerprint(TextSource(str(path))) != before


def test_truncated_shard_is_detected(tmp_path: Path) -> None:
    build_shards(TEXTS, CountingEncoder(), 0, tmp_path / "s", {"v": 1}, shard_tokens=100)
    shard = tmp_path / "s" / "shard_00001.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(LmfError, match="truncated"):
        load_tokens(tmp_path / "s")


def test_blocks_span_shards_and_every_token_is_a_target(tmp_path: Path) -> None:
    build_shards(TEXTS, CountingEncoder(), 0, tmp_path / "s", {"v": 1}, shard_tokens=50)
    tokens = _expected(TEXTS)
    blocks = PackedBlocks(load_tokens(tmp_path / "s"), 64)
    assert len(blocks) == len(tokens) // 64
    for i in (0, 1, len(blocks) - 1):
        assert blocks[i]["input_ids"] == tokens[i * 64 : (i + 1) * 64] == blocks[i]["labels"]
    assert len(PackedBlocks(load_tokens(tmp_path / "s"), 64, limit=3)) == 3
    with pytest.raises(IndexError):
        blocks[len(blocks)]


def _blocks(tmp_path: Path, name: str, value: int, n: int) -> PackedBlocks:
    texts = [chr(value) * 7] * n  # each document + EOS = one 8-token block
    build_shards(texts, CountingEncoder(), value, tmp_path / name, {"n": name}, shard_tokens=1000)
    return PackedBlocks(load_tokens(tmp_path / name), 8)


def test_mixing_draws_sources_by_weight_deterministically(tmp_path: Path) -> None:
    domain, general, unused = (
        _blocks(tmp_path, "a", 65, 30),
        _blocks(tmp_path, "b", 66, 90),
        _blocks(tmp_path, "c", 67, 5),
    )
    mixed = MixedBlocks([domain, general, unused], [3.0, 1.0, 0.0], seed=0)
    firsts = [block["input_ids"][0] for block in mixed]
    assert len(mixed) == 120 and firsts.count(65) == 90 and firsts.count(66) == 30 and 67 not in firsts
    assert mix_counts([30, 90, 5], [3.0, 1.0, 0.0]) == [90, 30, 0]
    again = MixedBlocks([domain, general, unused], [3.0, 1.0, 0.0], seed=0)
    assert list(again.blocks) == list(mixed.blocks)
    assert list(MixedBlocks([domain, general, unused], [3.0, 1.0, 0.0], seed=1).blocks) != list(mixed.blocks)
    empty = PackedBlocks([], 8)
    with pytest.raises(LmfError, match="no training blocks"):
        MixedBlocks([domain, empty], [1.0, 1.0], seed=0)


def test_trained_bpe_round_trips_text() -> None:
    tokenizer = train_bpe((t for t in TEXTS * 3), vocab_size=300)
    assert len(tokenizer) <= 300 and tokenizer.eos_token == "<|endoftext|>"
    text = "document 7: word word ünïcode"
    ids: Any = batch_encoder(tokenizer)([text])[0]
    assert tokenizer.decode(ids) == text
    assert tokenizer_hash(tokenizer) == tokenizer_hash(train_bpe(iter(TEXTS * 3), vocab_size=300))
    with pytest.raises(LmfError, match="empty"):
        train_bpe(iter([]), vocab_size=300)
