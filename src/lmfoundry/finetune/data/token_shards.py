"""Tokenize a corpus once into memory-mapped shard files; resume a killed run; reuse an unchanged one.

A shard folder holds `shard_00000.bin`, `shard_00001.bin`, ... (raw uint16 or uint32 token ids,
read with `numpy.memmap`) and `manifest.json`. Each document is encoded and followed by the EOS
id, and a shard closes at a document boundary once it holds `shard_tokens` tokens. Every shard is
written to a temporary file and renamed, and only then is the manifest rewritten (atomically)
with the shard and the number of documents consumed so far. So after a kill the manifest lists
only complete shards, and the next run skips that many documents and goes on from there.

The manifest records a fingerprint (the source's files, the tokenizer, the split); a folder whose
manifest is complete and whose fingerprint matches is reused as is, one whose fingerprint differs
is rebuilt from scratch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.fsutil import atomic_write_text

MANIFEST = "manifest.json"
ENCODE_BATCH = 256
"""Documents handed to the tokenizer at once (its Rust batch encoder)."""

Encoder = Callable[[list[str]], list[list[int]]]


@dataclass
class Manifest:
    fingerprint: dict[str, Any]
    dtype: str
    shards: list[dict[str, Any]] = field(default_factory=list)
    """{"file", "tokens", "documents"} per complete shard, in order."""
    documents: int = 0
    """Documents consumed by the listed shards (where a resumed run starts)."""
    complete: bool = False

    @property
    def tokens(self) -> int:
        return sum(int(s["tokens"]) for s in self.shards)


def token_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 2**16 else "uint32"


def fingerprint_key(fingerprint: dict[str, Any]) -> str:
    """A short stable hash of a fingerprint (the name of its cache folder)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def read_manifest(folder: Path) -> Manifest | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    return Manifest(**json.loads(path.read_text(encoding="utf-8")))


def _write_manifest(folder: Path, manifest: Manifest) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(asdict(manifest), indent=1))


def _write_shard(path: Path, ids: list[int], dtype: str) -> None:
    import numpy as np

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two runs may share a cache folder
    np.asarray(ids, dtype=dtype).tofile(tmp)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)


def _start(folder: Path, fingerprint: dict[str, Any], dtype: str) -> Manifest:
    """The manifest to continue from: the existing one if it matches, else a fresh folder."""
    manifest = read_manifest(folder)
    if manifest is not None and manifest.fingerprint == fingerprint and manifest.dtype == dtype:
        return manifest
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*shard_*"):
        stale.unlink()
    manifest = Manifest(fingerprint=fingerprint, dtype=dtype)
    _write_manifest(folder, manifest)
    return manifest


def _batches(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    while batch := list(itertools.islice(texts, size)):
        yield batch


def build_shards(
    docs: Iterable[str],
    encode: Encoder,
    eos_id: int,
    folder: Path,
    fingerprint: dict[str, Any],
    *,
    shard_tokens: int,
    dtype: str = "uint16",
    max_shards: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Manifest:
    """Tokenize `docs` into `folder` (resuming or reusing what is there); return the manifest.

    `max_shards` stops after that many shards in total (the manifest stays incomplete, as after a
    kill); `on_progress(tokens)` is called after each shard.
    """
    manifest = _start(folder, fingerprint, dtype)
    if manifest.complete:
        return manifest
    pending: list[int] = []
    pending_docs = 0
    remaining = itertools.islice(iter(docs), manifest.documents, None)
    for batch in _batches(remaining, ENCODE_BATCH):
        for ids in encode(batch):
            pending.extend(ids)
            pending.append(eos_id)
            pending_docs += 1
            if len(pending) >= shard_tokens:
                _close_shard(folder, manifest, pending, pending_docs)
                pending, pending_docs = [], 0
                if on_progress is not None:
                    on_progress(manifest.tokens)
                if max_shards is not None and len(manifest.shards) >= max_shards:
                    return manifest
    if pending:
        _close_shard(folder, manifest, pending, pending_docs)
    manifest.complete = True
    _write_manifest(folder, manifest)
    return manifest


def _close_shard(folder: Path, manifest: Manifest, ids: list[int], n_docs: int) -> None:
    name = f"shard_{len(manifest.shards):05d}.bin"
    _write_shard(folder / name, ids, manifest.dtype)
    manifest.shards.append({"file": name, "tokens": len(ids), "documents": n_docs})
    manifest.documents += n_docs
    _write_manifest(folder, manifest)


def load_tokens(folder: Path) -> list[Any]:
    """The shards of a complete folder as read-only numpy memmaps, in order."""
    import numpy as np

    manifest = read_manifest(folder)
    if manifest is None or not manifest.complete:
        raise LmfError(f"{folder} holds no complete tokenization (tokenize it first)")
    arrays = []
    for shard in manifest.shards:
        path = folder / shard["file"]
        if (
            not path.is_file()
            or path.stat().st_size != int(shard["tokens"]) * np.dtype(manifest.dtype).itemsize
        ):
            raise LmfError(f"{path} is missing or truncated; delete {folder} to tokenize again")
        arrays.append(np.memmap(path, dtype=manifest.dtype, mode="r"))
    return arrays
