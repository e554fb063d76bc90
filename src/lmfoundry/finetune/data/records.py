"""Fine-tuning data: load records from files, folders, bundled sets or `datasets` ids, and the
train / validation pair a run trains and evaluates on.

Records are plain dicts in one of the formats of `formats.py`; every record of a source must
share one format, and a bad record is an error naming file and line.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.finetune.config import DataConfig
from lmfoundry.finetune.data.formats import validate_record
from lmfoundry.finetune.data.splits import split_records
from lmfoundry.finetune.data.synthetic import MAKERS
from lmfoundry.paths import lmf_home
from lmfoundry.plugins import require

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def load_records(path_or_id: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """Load and validate records from a file, a directory, a bundled set or a `datasets` id.

    - a ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file;
    - a directory holding ``{split}.jsonl`` (or .json/.csv/.parquet), split default "train";
    - a name made by ``lmf data make`` (e.g. ``dialogsum-synthetic``, read from $LMF_HOME/data);
    - otherwise a Hugging Face `datasets` id (needs the network or the local datasets cache).

    Every record must share one format; a bad record raises LmfError naming file and line.
    """
    path = Path(path_or_id).expanduser()
    if not path.exists():
        bundled = lmf_home() / "data" / str(path_or_id)
        if bundled.is_dir():
            path = bundled
        elif str(path_or_id) in MAKERS:
            raise LmfError(f"{path_or_id!r} has not been made yet: run `lmf data make {path_or_id}`")
        elif path.suffix.lower() in FILE_SUFFIXES or len(path.parts) > 2 or path.is_absolute():
            raise LmfError(f"data file not found: {path}")
        else:
            return _check_all(_load_hub(str(path_or_id), split or "train"), str(path_or_id), "row")
    if path.is_dir():
        path = _split_file(path, split or "train")
    suffix = path.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
    if suffix not in readers:
        raise LmfError(f"{path}: unsupported data file type {suffix!r} (use {', '.join(FILE_SUFFIXES)})")
    where = {".jsonl": "line", ".json": "item", ".csv": "line", ".parquet": "row"}[suffix]
    return _check_all(readers[suffix](path), str(path), where)


def _split_file(directory: Path, split: str) -> Path:
    for suffix in FILE_SUFFIXES:
        candidate = directory / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    found = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in FILE_SUFFIXES)
    raise LmfError(f"{directory} has no {split!r} split file (found: {', '.join(found) or 'none'})")


def _check_all(rows: Iterable[tuple[int, Any]], source: str, where: str) -> list[dict[str, Any]]:
    """Validate every (position, record); all records must have the first record's format."""
    records: list[dict[str, Any]] = []
    first: str | None = None
    for position, record in rows:
        try:
            fmt = validate_record(record)
            if first is not None and fmt != first:
                raise InvalidInputError(f"record is {fmt} but earlier records are {first}")
        except InvalidInputError as exc:
            raise InvalidInputError(f"{source} {where} {position}: {exc}") from None
        first = fmt
        if fmt == "instruction" and record.get("input") is None:
            record = {**record, "input": ""}
        records.append(dict(record))
    if not records:
        raise LmfError(f"{source}: no records")
    return records


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{path} line {number}: invalid JSON ({exc.msg})") from None


def _read_json(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise InvalidInputError(f"{path}: a .json data file must hold a list of records")
    yield from enumerate(data, start=1)


_JSON_COLUMNS = ("messages", "chosen", "rejected", "prompt")


def _read_csv(path: Path) -> Iterator[tuple[int, Any]]:
    """CSV rows; a `messages` (or preference) cell holding a JSON list is decoded."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            record: dict[str, Any] = {k: v for k, v in row.items() if k is not None}
            for key in _JSON_COLUMNS:
                value = record.get(key)
                if isinstance(value, str) and value.lstrip().startswith("["):
                    try:
                        record[key] = json.loads(value)
                    except json.JSONDecodeError:
                        if key == "messages":
                            raise InvalidInputError(
                                f"{path} line {reader.line_num}: 'messages' is not valid JSON"
                            ) from None
            yield reader.line_num, record


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    parquet = require("pyarrow.parquet", extra="train", package="pyarrow")
    try:
        rows = parquet.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InvalidInputError(f"{path}: cannot read Parquet ({exc})") from None
    yield from enumerate(rows, start=1)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _load_hub(dataset_id: str, split: str) -> list[tuple[int, Any]]:
    """Rows of a Hugging Face dataset (works offline only for datasets already cached)."""

    datasets = require("datasets", extra="train")
    try:
        dataset = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
        if _hub_offline():
            raise LmfError(
                f"{dataset_id!r} is not a local file, directory or bundled set, and HF_HUB_OFFLINE=1 "
                f"stops `datasets` from downloading it; pass a JSONL/CSV/Parquet file or unset "
                f"HF_HUB_OFFLINE ({type(exc).__name__}: {exc})"
            ) from None
        raise LmfError(f"cannot load dataset {dataset_id!r} split {split!r}: {exc}") from None
    return list(enumerate(dataset, start=1))


def train_validation_records(cfg: DataConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, validation) records: the data's validation file, else a seeded split of train."""

    path = Path(cfg.path).expanduser()
    bundled = lmf_home() / "data" / cfg.path
    if not path.exists() and cfg.path in MAKERS and not bundled.is_dir():
        print(f"making the bundled data set {cfg.path} (first use)", file=sys.stderr)
        MAKERS[cfg.path]()
    folder = path if path.is_dir() else bundled if not path.exists() else None
    has_validation = folder is not None and any(folder.glob("validation.*"))
    train = load_records(cfg.path, "train")
    if has_validation:
        validation = load_records(cfg.path, "validation")
    else:
        parts = split_records(train, cfg.split_seed, (1 - cfg.validation_fraction, cfg.validation_fraction))
        train, validation = parts["train"], parts["validation"]
    return train[: cfg.limit] if cfg.limit else train, validation[
        : cfg.eval_limit
    ] if cfg.eval_limit else validation
