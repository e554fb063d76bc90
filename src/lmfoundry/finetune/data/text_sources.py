"""Raw-text sources of the pretraining stages: where documents come from and what identifies them.

A source is a mapping from the config (`pretrain.sources`), parsed into `TextSource`. Its
documents are read lazily, one string at a time, in a fixed order:

- a text file (`.txt`, `.md`, `.rst`, `.py`, ...): one document; a folder: each text file in it,
  sorted by path, is one document;
- `.jsonl`: one document per line, the `text_field` of the object; `.parquet`: one per row,
  read a row group at a time;
- `builtin:python-reference`: the topics of Python's own language reference (`pydoc_data`);
- `hf:NAME`: a `datasets` data set, streamed (`data_files` for local files, e.g. `hf:json`);
- a bundled set made by `lmf data make` (e.g. `dialogsum-synthetic`, its train.jsonl; pick the
  field with `text_field: dialogue`).

Documents are split into train and validation whole, by a seeded hash of their position, so the
held-out perplexity is measured on documents the model never saw. `fingerprint` identifies what a
source holds (paths, sizes and modification times; the data set id) so tokenized shards are
reused while it is unchanged.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.fsutil import read_jsonl
from lmfoundry.paths import lmf_home
from lmfoundry.plugins import require

BUILTIN_PYTHON_REFERENCE = "builtin:python-reference"
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py", ".text")
SPLITS = ("train", "validation")
_KEYS = {"path", "weight", "text_field", "split", "data_files"}


@dataclass(frozen=True)
class TextSource:
    path: str
    weight: float = 1.0
    """Share of training blocks drawn from this source (relative); 0 = evaluated only."""
    text_field: str = "text"
    split: str = "train"
    """`hf:` sources: the data set split to stream."""
    data_files: str | None = None
    """`hf:` sources: passed to `datasets.load_dataset(data_files=...)`."""

    @property
    def name(self) -> str:
        """A short readable name: the file stem, the data set id, or the builtin name."""
        if self.path.startswith(("hf:", "builtin:")):
            return self.path.split(":", 1)[1].replace("/", "-")
        return Path(self.path).stem or "source"


def parse_sources(raw: list[dict[str, Any]], default_path: str) -> list[TextSource]:
    """`pretrain.sources` as TextSources (`data.path` alone when empty); errors name the entry."""
    entries = raw or [{"path": default_path}]
    sources = []
    for number, entry in enumerate(entries, start=1):
        unknown = sorted(set(entry) - _KEYS)
        if unknown or "path" not in entry:
            raise InvalidInputError(
                f"pretrain.sources[{number}]: needs `path`; allowed keys are {', '.join(sorted(_KEYS))}"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        try:
            source = TextSource(
                **{**entry, "path": str(entry["path"]), "weight": float(entry.get("weight", 1.0))}
            )
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"pretrain.sources[{number}]: {exc}") from None
        if source.weight < 0:
            raise InvalidInputError(f"pretrain.sources[{number}]: weight must be >= 0, got {source.weight}")
        sources.append(source)
    names = [s.name for s in sources]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInputError(f"pretrain.sources: two sources are named {twice[0]!r}; rename a file")
    if not any(s.weight > 0 for s in sources):
        raise InvalidInputError("pretrain.sources: at least one source needs a weight > 0")
    return sources


def in_validation(index: int, fraction: float, seed: int) -> bool:
    """Whether document `index` is held out: a seeded hash, stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_documents(source: TextSource, split: str, fraction: float, seed: int) -> Iterator[str]:
    """The documents of `source` that fall in `split` ("train" or "validation"), in order."""
    held_out = split == "validation"
    for index, text in enumerate(documents(source)):
        if in_validation(index, fraction, seed) == held_out and text.strip():
            yield text


def documents(source: TextSource) -> Iterator[str]:
    """Every document of `source`, in a fixed order."""
    if source.path == BUILTIN_PYTHON_REFERENCE:
        from pydoc_data.topics import topics

        return (topics[key] for key in sorted(topics))
    if source.path.startswith("builtin:"):
        raise LmfError(f"unknown builtin corpus {source.path!r} (known: {BUILTIN_PYTHON_REFERENCE})")
    if source.path.startswith("hf:"):
        return _streamed(source)
    path = local_path(source)
    if path.is_dir():
        return (p.read_text(encoding="utf-8", errors="replace") for p in _text_files(path))
    if not path.is_file():
        raise LmfError(f"pretraining source not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl(path, source.text_field)
    if suffix == ".parquet":
        return _parquet(path, source.text_field)
    if suffix in TEXT_SUFFIXES:
        return iter([path.read_text(encoding="utf-8", errors="replace")])
    raise LmfError(
        f"{path}: unsupported pretraining source type {suffix!r} "
        f"(use {', '.join(TEXT_SUFFIXES)}, .jsonl, .parquet, a folder, hf:NAME or {BUILTIN_PYTHON_REFERENCE})"
    )


def local_path(source: TextSource) -> Path:
    """The file or folder of a local source; a bundled set name means its train.jsonl."""
    path = Path(source.path).expanduser()
    bundled = lmf_home() / "data" / source.path / "train.jsonl"
    return bundled if not path.exists() and bundled.is_file() else path


def _text_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise LmfError(f"{folder} holds no text files ({', '.join(TEXT_SUFFIXES)})")
    return files


def _field(record: Any, key: str, where: str) -> str:
    if not isinstance(record, dict) or not isinstance(record.get(key), str):
        raise InvalidInputError(f"{where}: expected an object with a string {key!r} field")
    return str(record[key])


def _jsonl(path: Path, key: str) -> Iterator[str]:
    for number, record in read_jsonl(path, f"pretraining source not found: {path}"):
        yield _field(record, key, f"{path} line {number}")


def _parquet(path: Path, key: str) -> Iterator[str]:
    parquet = require("pyarrow.parquet", extra="train", package="pyarrow")
    try:
        table = parquet.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InvalidInputError(f"{path}: cannot read Parquet ({exc})") from None
    if key not in table.schema_arrow.names:
        raise InvalidInputError(f"{path}: no column {key!r} (columns: {', '.join(table.schema_arrow.names)})")
    for batch in table.iter_batches(columns=[key], batch_size=1024):
        yield from (text for text in batch.column(0).to_pylist() if isinstance(text, str))


def _streamed(source: TextSource) -> Iterator[str]:
    datasets = require("datasets", extra="train")
    name = source.path[3:]
    try:
        stream = datasets.load_dataset(name, split=source.split, streaming=True, data_files=source.data_files)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
        raise LmfError(f"cannot stream data set {name!r} split {source.split!r}: {exc}") from None
    for number, record in enumerate(stream, start=1):
        yield _field(record, source.text_field, f"{name} row {number}")


def fingerprint(source: TextSource) -> dict[str, Any]:
    """What identifies the source's content without reading it all: files' sizes and mtimes."""
    base: dict[str, Any] = {"path": source.path, "text_field": source.text_field}
    if source.path == BUILTIN_PYTHON_REFERENCE:
        return {**base, "python": sys.version}
    if source.path.startswith("hf:"):
        named = source.data_files
        stats = _file_stats([Path(named)]) if named and Path(named).is_file() else None
        return {**base, "split": source.split, "data_files": named, "files": stats}
    path = local_path(source)
    if not path.exists():
        raise LmfError(f"pretraining source not found: {path}")
    files = _text_files(path) if path.is_dir() else [path]
    return {**base, "path": str(path.resolve()), "files": _file_stats(files)}


def _file_stats(files: list[Path]) -> list[tuple[str, int, int]]:
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
