"""The held-out text of the quantization report, and the rule that keeps calibration text apart.

A fixed selection of Python's own language-reference topics (`pydoc_data.topics`), concatenated
in the order of `TOPICS`. GPTQ calibrates on the rest of the reference (`gptq.py`), so the
report never scores a model on text its codes were chosen on.
"""

from __future__ import annotations

from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError

TOPICS = (
    "assignment", "augassign", "class", "compound", "exceptions", "execmodel", "for", "function",
    "if", "import", "lambda", "naming", "raise", "return", "try", "while", "with", "yield",
    "context-managers", "comparisons", "calls", "customization", "typesseq", "typesmapping",
)  # fmt: skip
"""A fixed selection of `pydoc_data.topics`, concatenated in this order: the held-out text."""


def heldout_text(min_chars: int = 0) -> str:
    """The topics above joined by blank lines (all of them; `min_chars` only checks length)."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[t].strip() for t in TOPICS if t in topics)
    if len(text) < min_chars:
        raise LmfError(f"the held-out corpus has only {len(text)} characters")
    return text


def heldout_ids(tokenizer: Any, tokens: int) -> list[int]:
    """The first `tokens` ids of the held-out text (no special tokens added)."""
    if tokens < 2:
        raise InvalidInputError(f"--tokens must be at least 2, got {tokens}")
    ids = list(tokenizer(heldout_text(), add_special_tokens=False)["input_ids"])
    if len(ids) < tokens:
        raise InvalidInputError(f"--tokens {tokens} is more than the held-out text has ({len(ids)} tokens)")
    return ids[:tokens]


def windows(ids: list[int], window: int) -> list[list[int]]:
    """Non-overlapping windows; a last piece shorter than 2 tokens predicts nothing and is dropped."""
    if window < 2:
        raise InvalidInputError(f"--window must be at least 2, got {window}")
    return [ids[i : i + window] for i in range(0, len(ids), window) if len(ids[i : i + window]) >= 2]
