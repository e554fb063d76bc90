"""Split documents into token-bounded, overlapping chunks that end at natural boundaries.

Sizes are counted in the tokens of the embedder's tokenizer (any fast HF tokenizer), because an
embedder silently truncates what does not fit: all-MiniLM-L6-v2 reads at most 256 word pieces
including [CLS]/[SEP], so its default chunk size is 254, not 512.

Invariants (tested): chunks cover every non-whitespace character of the document,
`doc.text[c.start:c.end] == c.text`, each chunk re-tokenizes to at most `chunk_size` tokens, and
consecutive chunks share `min(overlap, tokens of the earlier chunk - 1)` token positions (fewer
only when the later chunk is itself shorter than that).
"""

from __future__ import annotations

import hashlib
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.rag.documents import Document
from lmfoundry.types import Chunk

DEFAULT_CHUNK_SIZE = 512
DEFAULT_OVERLAP = 32
_SENTENCE_END = ".!?;:"


def default_chunk_size(max_seq_length: int | None, special_tokens: int = 0) -> int:
    """min(512, what the embedder reads without truncation)."""
    if not max_seq_length:
        return DEFAULT_CHUNK_SIZE
    return max(1, min(DEFAULT_CHUNK_SIZE, max_seq_length - special_tokens))


def default_overlap(chunk_size: int) -> int:
    return min(DEFAULT_OVERLAP, chunk_size // 4)


def chunk_id(source: str, start: int, end: int) -> str:
    """Deterministic id: the same span of the same source always gets the same id."""
    return hashlib.sha256(f"{source}\x00{start}\x00{end}".encode()).hexdigest()[:24]


def token_spans(text: str, tokenizer: Any) -> list[tuple[int, int]]:
    """Character spans of the tokens of `text`; empty and whitespace-only tokens (byte-level
    BPE has them) are dropped, so chunks never start or end on whitespace, and tokens that share
    characters are merged, so a chunk never starts inside a character."""
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidInputError("chunking needs a fast tokenizer (one that returns offset mappings)")
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False, verbose=False)
    spans: list[tuple[int, int]] = []
    for s, e in enc["offset_mapping"]:
        if e <= s or text[s:e].isspace():
            continue
        if spans and s < spans[-1][1]:  # byte tokens of one character share its span: merge them
            spans[-1] = (spans[-1][0], max(e, spans[-1][1]))
        else:
            spans.append((int(s), int(e)))
    return spans


def _break_rank(text: str, spans: list[tuple[int, int]], k: int) -> float:
    """How good a chunk end is between token k-1 and token k (3 paragraph ... 0 mid-word)."""
    gap = text[spans[k - 1][1] : spans[k][0]]
    if gap.count("\n") >= 2:
        return 3
    if gap and text[spans[k - 1][1] - 1] in _SENTENCE_END:
        return 2
    if "\n" in gap:
        return 1
    return 0.5 if gap else 0.0


def _pick_end(text: str, spans: list[tuple[int, int]], i: int, size: int, overlap: int) -> int:
    """The token index where the chunk starting at token i should end (exclusive)."""
    j = min(i + size, len(spans))
    if j == len(spans):
        return j
    lowest = min(j, i + max(size // 2, overlap + 1))
    best, best_rank = j, -1.0
    for k in range(j, lowest - 1, -1):
        rank = _break_rank(text, spans, k)
        if rank > best_rank:
            best, best_rank = k, rank
        if rank >= 3:
            break
    return best


def _span_chars(text: str, spans: list[tuple[int, int]], i: int, j: int) -> tuple[int, int]:
    """Character span of tokens [i, j): it swallows untokenized characters up to the next token
    (so control characters a tokenizer drops are still covered) and trims whitespace."""
    start = spans[i][0] if i > 0 else len(text) - len(text.lstrip())
    end = spans[j][0] if j < len(spans) else len(text)
    while start < end and text[start].isspace():  # byte-level BPE offsets include a leading space
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _token_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def chunk_spans(text: str, tokenizer: Any, chunk_size: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans of the chunks of `text` (see the module docstring for the rules)."""
    if chunk_size < 1:
        raise InvalidInputError(f"chunk size must be >= 1, got {chunk_size}")
    if not 0 <= overlap < chunk_size:
        raise InvalidInputError(f"overlap must be in [0, chunk size {chunk_size}), got {overlap}")
    spans = token_spans(text, tokenizer)
    result: list[tuple[int, int]] = []
    i = 0
    while i < len(spans):
        j = _pick_end(text, spans, i, chunk_size, overlap)
        start, end = _span_chars(text, spans, i, j)
        # Re-tokenizing a slice can differ from the slice of the tokens (a cut inside a word):
        # shrink until the chunk really fits the embedder.
        while j - i > 1 and (excess := _token_count(tokenizer, text[start:end]) - chunk_size) > 0:
            j = max(i + 1, j - excess)
            start, end = _span_chars(text, spans, i, j)
        result.append((start, end))
        if j >= len(spans):
            break
        i = max(j - overlap, i + 1)
    return result


def chunk_document(doc: Document, tokenizer: Any, chunk_size: int, overlap: int) -> list[Chunk]:
    """`Chunk`s of one document; metadata is the document's plus the chunk's index."""
    chunks = []
    for index, (start, end) in enumerate(chunk_spans(doc.text, tokenizer, chunk_size, overlap)):
        meta = {**doc.metadata, "chunk_index": index}
        chunks.append(
            Chunk(chunk_id(doc.source, start, end), doc.source, doc.text[start:end], start, end, meta)
        )
    return chunks
