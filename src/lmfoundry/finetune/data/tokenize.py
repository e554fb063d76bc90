"""Tokenization with label masking, packing and batching of fine-tuning examples.

A template (see `templates.py`) turns a record into (prompt, completion); tokenization masks
the prompt tokens with -100 so the loss only covers the completion.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.finetune.data.templates import render

if TYPE_CHECKING:
    import torch


IGNORE_INDEX = -100


DEFAULT_MAX_LENGTH = 1024


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


def special_prefix(tokenizer: Any) -> list[int]:
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
        prefix = special_prefix(tokenizer)
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

    if max_length < 1:
        raise InvalidInputError(f"max_length must be >= 1, got {max_length}")
    prefix = special_prefix(tokenizer)
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
