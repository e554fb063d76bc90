"""Fine-tuning data: record formats, loading, tokenization with label masking, packing, splits.

Records are plain dicts in one of five formats, recognised by their keys:

- ``summarization``: ``{id, dialogue, summary, topic}`` (DialogSum style)
- ``instruction``:   ``{instruction, input, output}`` (Alpaca style; ``input`` may be empty)
- ``chat``:          ``{messages: [{role, content}, ...]}``
- ``text``:          ``{text}`` (continued pre-training: every token is a target)
- ``preference``:    ``{prompt, chosen, rejected}`` (for DPO / reward models)

A template (see `templates.py`) turns a record into (prompt, completion); tokenization masks
the prompt tokens with -100 so the loss only covers the completion.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.paths import lmf_home

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100
DEFAULT_MAX_LENGTH = 1024
SPLIT_NAMES = ("train", "validation", "test")
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
CHAT_ROLES = {"system", "user", "assistant", "tool"}

# Format name -> (identifying key, required string fields). Checked in this order.
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "preference": ("chosen", ("prompt", "chosen", "rejected")),
    "chat": ("messages", ("messages",)),
    "summarization": ("dialogue", ("dialogue", "summary")),
    "instruction": ("instruction", ("instruction", "output")),
    "text": ("text", ("text",)),
}


# --------------------------------------------------------------------------- formats


def detect_format(record: Mapping[str, Any]) -> str:
    """Name the format of `record` from its keys (see FORMATS); raise if none matches."""
    if not isinstance(record, Mapping):
        raise InvalidInputError(f"a record must be a JSON object, got {type(record).__name__}")
    for name, (key, _) in FORMATS.items():
        if key in record or (name == "preference" and "rejected" in record):
            return name
    expected = "; ".join(f"{n}: {', '.join(f)}" for n, (_, f) in FORMATS.items())
    raise InvalidInputError(f"record keys {sorted(record)} match no format (expected {expected})")


def validate_record(record: Mapping[str, Any], fmt: str | None = None) -> str:
    """Check the fields `fmt` needs (detected when None) and return the format name."""
    fmt = fmt or detect_format(record)
    for field in FORMATS[fmt][1]:
        if field not in record or record[field] is None:
            raise InvalidInputError(f"{fmt} record is missing {field!r}")
    if fmt == "chat":
        _check_messages(record["messages"], "messages")
    elif fmt == "preference":
        for field in ("prompt", "chosen", "rejected"):
            value = record[field]
            if isinstance(value, list):
                _check_messages(value, field)
            elif not isinstance(value, str):
                raise InvalidInputError(f"{field!r} must be a string or a list of messages")
    else:
        for field in FORMATS[fmt][1] + (("input",) if fmt == "instruction" else ()):
            value = record.get(field)
            if value is not None and not isinstance(value, str):
                raise InvalidInputError(f"{field!r} must be a string, got {type(value).__name__}")
        if not str(record[FORMATS[fmt][0]]).strip():
            raise InvalidInputError(f"{FORMATS[fmt][0]!r} is empty")
    return fmt


def _check_messages(messages: Any, field: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError(f"{field!r} must be a non-empty list of {{role, content}} objects")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
            raise InvalidInputError(f"{field}[{i}] must be an object with a string 'content'")
        if message.get("role") not in CHAT_ROLES:
            raise InvalidInputError(
                f"{field}[{i}] has role {message.get('role')!r} (expected one of {sorted(CHAT_ROLES)})"
            )


# --------------------------------------------------------------------------- loading


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
        elif str(path_or_id) in _maker_names():
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


def _maker_names() -> list[str]:
    from lmfoundry.finetune.synthetic import MAKERS

    return list(MAKERS)


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
    from lmfoundry.plugins import require

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
    from lmfoundry.plugins import require

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


# --------------------------------------------------------------------------- splits


def split_records(
    records: Sequence[dict[str, Any]], seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> dict[str, list[dict[str, Any]]]:
    """Shuffle with `seed` and cut into train/validation[/test]; same seed, same split.

    Two fractions give train and validation; three add test. Fractions must sum to 1.
    """
    if len(fractions) not in (2, 3) or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise InvalidInputError(
            f"fractions must be 2 or 3 non-negative numbers summing to 1, got {fractions}"
        )
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    bounds, total = [0], 0.0
    for fraction in fractions:
        total += fraction
        bounds.append(round(total * len(records)))
    bounds[-1] = len(records)
    return {
        name: [records[i] for i in order[bounds[k] : bounds[k + 1]]]
        for k, name in enumerate(SPLIT_NAMES[: len(fractions)])
    }


# --------------------------------------------------------------------------- tokenization


def max_length_from_config(config: Any) -> int:
    """The model's context length: n_positions, max_position_embeddings or seq_length, else 1024.

    Accepts a transformers config or a plain mapping; looks into `text_config` for multimodal ones.
    """

    def value(obj: Any, key: str) -> Any:
        return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)

    for obj in (config, value(config, "text_config")):
        if obj is None:
            continue
        for key in ("n_positions", "max_position_embeddings", "seq_length"):
            found = value(obj, key)
            if isinstance(found, int) and found > 0:
                return found
    return DEFAULT_MAX_LENGTH


def _special_prefix(tokenizer: Any) -> list[int]:
    """Ids the tokenizer puts before text by default (a BOS token for Llama-2-style tokenizers)."""
    with_special = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    if plain and with_special[-len(plain) :] == plain:
        return with_special[: len(with_special) - len(plain)]
    return []


def encode_pair(
    tokenizer: Any, prompt: str, completion: str, prefix: list[int] | None = None
) -> tuple[list[int], list[int]]:
    """Token ids of prompt (with the tokenizer's BOS prefix) and completion (ending in EOS).

    The two halves are encoded separately so the prompt/completion boundary is exact. A prompt
    that already starts with the BOS text (chat templates often include it) gets no second one;
    a completion already ending in the EOS text (chat templates) gets no second one.
    """
    eos_id, eos = tokenizer.eos_token_id, tokenizer.eos_token
    if eos_id is None:
        raise LmfError("the tokenizer has no EOS token, so a completion cannot be terminated")
    if prefix is None:
        prefix = _special_prefix(tokenizer)
    bos = tokenizer.bos_token
    if bos and prompt.startswith(bos):
        prefix = []
    prompt_ids = (
        prefix + list(tokenizer(prompt, add_special_tokens=False)["input_ids"]) if prompt else list(prefix)
    )
    completion_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    if not (eos and completion.rstrip().endswith(eos)):
        completion_ids.append(eos_id)
    return prompt_ids, completion_ids


def _assemble(prompt_ids: list[int], completion_ids: list[int], max_length: int) -> dict[str, list[int]]:
    input_ids = (prompt_ids + completion_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def tokenize_example(tokenizer: Any, prompt: str, completion: str, max_length: int) -> dict[str, list[int]]:
    """input_ids, attention_mask and labels (prompt tokens = -100), cut to `max_length` tokens.

    EOS is appended to the completion so the model learns to stop. Truncation drops tokens from
    the end; `build_dataset` counts and reports it.
    """
    if max_length < 1:
        raise InvalidInputError(f"max_length must be >= 1, got {max_length}")
    prompt_ids, completion_ids = encode_pair(tokenizer, prompt, completion)
    return _assemble(prompt_ids, completion_ids, max_length)


@dataclass(frozen=True)
class TokenizeReport:
    """What tokenization did: lengths before truncation, how many were cut or dropped."""

    n_examples: int
    n_truncated: int  # longer than max_length, cut from the end
    n_dropped: int  # no completion token left after truncation, so nothing to learn: skipped
    max_length: int
    min_tokens: int
    mean_tokens: float
    p95_tokens: int
    max_tokens: int
    n_sequences: int  # training sequences produced (blocks when packing)
    packing: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def warning(self) -> str | None:
        """A one-line warning when examples were truncated or dropped, else None."""
        if not self.n_truncated:
            return None
        text = (
            f"{self.n_truncated} of {self.n_examples} examples are longer than max_length "
            f"{self.max_length} tokens (longest {self.max_tokens}) and were truncated"
        )
        if self.n_dropped:
            text += f"; {self.n_dropped} lost their whole completion and were dropped"
        return text


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    """min, mean, p95 (nearest rank) and max of token lengths."""
    if not lengths:
        return {"min": 0, "mean": 0.0, "p95": 0, "max": 0}
    ordered = sorted(lengths)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {"min": ordered[0], "mean": sum(ordered) / len(ordered), "p95": p95, "max": ordered[-1]}


def build_dataset(
    records: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    template: str,
    max_length: int,
    packing: bool = False,
    *,
    warn: bool = True,
) -> tuple[list[dict[str, list[int]]], TokenizeReport]:
    """Render, tokenize and mask every record; optionally pack into `max_length` blocks.

    Without packing an example longer than `max_length` is cut from the end (and dropped when
    not one completion token is left). Truncation is never silent: it is counted in the report
    and, with `warn`, printed to stderr. With packing nothing is cut: whole examples are joined
    and split into blocks, so a long example spans two blocks.
    """
    from lmfoundry.finetune.templates import render

    if max_length < 1:
        raise InvalidInputError(f"max_length must be >= 1, got {max_length}")
    prefix = _special_prefix(tokenizer)
    examples: list[dict[str, list[int]]] = []
    lengths: list[int] = []
    n_truncated = n_dropped = 0
    for record in records:
        prompt, completion = render(template, record, tokenizer)
        prompt_ids, completion_ids = encode_pair(tokenizer, prompt, completion, prefix)
        lengths.append(len(prompt_ids) + len(completion_ids))
        if packing:  # whole examples are concatenated; blocks are cut afterwards, nothing is lost
            examples.append(_assemble(prompt_ids, completion_ids, lengths[-1]))
            continue
        if lengths[-1] > max_length:
            n_truncated += 1
            if len(prompt_ids) >= max_length:
                n_dropped += 1
                continue
        examples.append(_assemble(prompt_ids, completion_ids, max_length))
    if packing:
        examples = pack_examples(examples, max_length)
    stats = length_stats(lengths)
    report = TokenizeReport(
        n_examples=len(records),
        n_truncated=n_truncated,
        n_dropped=n_dropped,
        max_length=max_length,
        min_tokens=int(stats["min"]),
        mean_tokens=float(stats["mean"]),
        p95_tokens=int(stats["p95"]),
        max_tokens=int(stats["max"]),
        n_sequences=len(examples),
        packing=packing,
    )
    message = report.warning()
    if warn and message:
        print(f"warning: {message}", file=sys.stderr)
    return examples, report


def pack_examples(examples: Sequence[Mapping[str, list[int]]], block_size: int) -> list[dict[str, list[int]]]:
    """Concatenate examples and cut into `block_size` blocks; labels keep their -100 masks.

    Every token is kept (the last block may be shorter). Examples in one block can attend to
    each other; each ends in EOS, which is the usual trade for no padding.
    """
    if block_size < 1:
        raise InvalidInputError(f"block size must be >= 1, got {block_size}")
    ids = [t for e in examples for t in e["input_ids"]]
    labels = [t for e in examples for t in e["labels"]]
    blocks = []
    for start in range(0, len(ids), block_size):
        chunk = ids[start : start + block_size]
        blocks.append(
            {
                "input_ids": chunk,
                "attention_mask": [1] * len(chunk),
                "labels": labels[start : start + block_size],
            }
        )
    return blocks


def collate(examples: Sequence[Mapping[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch into tensors: pad id for inputs, 0 for the mask, -100 for labels."""
    import torch

    width = max(len(e["input_ids"]) for e in examples)

    def padded(key: str, fill: int) -> torch.Tensor:
        return torch.tensor(
            [list(e[key]) + [fill] * (width - len(e[key])) for e in examples], dtype=torch.long
        )

    return {
        "input_ids": padded("input_ids", pad_token_id),
        "attention_mask": padded("attention_mask", 0),
        "labels": padded("labels", IGNORE_INDEX),
    }
