"""Training pairs for an embedder from the corpus alone: the Inverse Cloze Task.

A generator model good enough to write hundreds of questions may not be at hand (the packaged
135M reader keeps about a quarter of what it writes, at minutes per question on a CPU). The
Inverse Cloze Task (Lee et al., 2019, "Latent Retrieval for Weakly Supervised Open Domain
Question Answering") needs no model: a sentence of a chunk is the query, and the rest of the
chunk, without that sentence, is the positive, so the embedder has to match a statement to the
context it came from rather than to its own words. Each pair can carry a mined hard negative:
the chunk of another source that the current embedder ranks highest for the query.

Sentences are taken round-robin over a seeded shuffle of the chunks (each chunk gives its first
unused sentence per round), so a few thousand pairs cover the whole corpus; only prose sentences
count (6-40 words, mostly letters), so grammar rules and code lines are not queries.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from lmfoundry.embed.sentence import embed_texts
from lmfoundry.rag.index import RagIndex, embedded_text
from lmfoundry.types import Chunk

MIN_WORDS = 6
MAX_WORDS = 40
MIN_CONTEXT_WORDS = 20
_SENTENCE = re.compile(r"[^.!?]+[.!?](?=\s|$)")


def prose_sentences(text: str) -> list[str]:
    """The chunk's sentences that read as prose: MIN_WORDS-MAX_WORDS words, at least 80% of
    their characters letters or spaces, starting with a capital letter."""
    flat = " ".join(text.split())
    out = []
    for match in _SENTENCE.finditer(flat):
        sentence = match.group().strip()
        words = len(sentence.split())
        letters = sum(ch.isalpha() or ch == " " for ch in sentence)
        if MIN_WORDS <= words <= MAX_WORDS and letters >= 0.8 * len(sentence) and sentence[0].isupper():
            out.append(sentence)
    return out


def without(text: str, sentence: str) -> str:
    """The chunk's text (whitespace collapsed) with the sentence cut out."""
    return " ".join(" ".join(text.split()).replace(sentence, " ", 1).split())


def cloze_pairs(chunks: Sequence[Chunk], n: int, seed: int = 0) -> list[tuple[str, Chunk, str]]:
    """Up to `n` (query sentence, its chunk, the chunk's embedded text without it)."""
    rng = random.Random(seed)
    order = list(chunks)
    rng.shuffle(order)
    pools = []
    for chunk in order:
        sentences = prose_sentences(chunk.text)
        rng.shuffle(sentences)
        pools.append((chunk, sentences))
    pairs: list[tuple[str, Chunk, str]] = []
    while len(pairs) < n and any(s for _, s in pools):
        for chunk, sentences in pools:
            if not sentences or len(pairs) >= n:
                continue
            sentence = sentences.pop()
            context = without(embedded_text(chunk), sentence)
            if len(context.split()) >= MIN_CONTEXT_WORDS:
                pairs.append((sentence, chunk, context))
    return pairs


def pseudo_query_rows(
    index: RagIndex, n: int, seed: int = 0, hard_negatives: bool = True
) -> list[dict[str, str]]:
    """(anchor, positive[, negative]) rows from `n` cloze pairs of the store's chunks; the
    negative is the best-ranked chunk of another source for the query (the store's own search)."""
    pairs = cloze_pairs(index.store.chunks(), n, seed)
    if not hard_negatives:
        return [{"anchor": q, "positive": context} for q, _, context in pairs]
    vectors = embed_texts(index.embedder, [q for q, _, _ in pairs], use_cache=False, progress=False)
    rows = []
    for (query, chunk, context), vector in zip(pairs, vectors, strict=True):
        hits = index.store.search(vector, 10)
        negative = next((c for c, _ in hits if c.source != chunk.source), None)
        if negative is not None:
            rows.append({"anchor": query, "positive": context, "negative": embedded_text(negative)})
    return rows
