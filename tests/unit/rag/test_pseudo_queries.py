"""Inverse-cloze pseudo-queries: which sentences count, the pairs they make, mined negatives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmfoundry.rag import index_paths
from lmfoundry.rag.index import open_index
from lmfoundry.rag.pseudo_queries import cloze_pairs, prose_sentences, pseudo_query_rows
from lmfoundry.types import Chunk

PROSE = (
    "The for statement is used to iterate over the elements of a sequence. "
    'for_stmt ::= "for" target_list "in" starred_list ":" suite. '
    "Short one. "
    "The suite is executed once for each item provided by the iterator, in the order of ascending "
    "indices. lower case start is not a sentence we want here at all."
)


def _chunk(source: str, text: str, start: int = 0) -> Chunk:
    return Chunk(chunk_id=f"{source}-{start}", source=source, text=text, start=start, end=start + len(text))


def test_prose_sentences_skip_grammar_short_and_lowercase_lines() -> None:
    assert prose_sentences(PROSE) == [
        "The for statement is used to iterate over the elements of a sequence.",
        "The suite is executed once for each item provided by the iterator, in the order of ascending indices.",
    ]


def test_cloze_pairs_cut_the_query_out_of_its_chunk_and_cover_chunks_first() -> None:
    chunks = [_chunk("a", PROSE), _chunk("b", PROSE.replace("for", "while"), 1)]
    pairs = cloze_pairs(chunks, 2, seed=3)
    assert {c.source for _, c, _ in pairs} == {"a", "b"}  # one per chunk before a second from any
    for query, chunk, context in pairs:
        assert query in chunk.text and query not in context
        assert len(context.split()) >= 20
    assert cloze_pairs(chunks, 2, seed=3) == pairs  # seeded
    assert len(cloze_pairs(chunks, 100)) == 4  # every prose sentence once, then it stops


def test_pseudo_query_rows_mine_a_negative_from_another_source(prose_corpus_dir: Path, embedder: Any) -> None:
    index_paths([prose_corpus_dir], "docs", embedder=embedder, progress=False)
    index = open_index("docs", embedder=embedder)
    try:
        chunks = {c.source: c for c in index.store.chunks()}
        rows = pseudo_query_rows(index, 6, seed=0)
        plain = pseudo_query_rows(index, 6, seed=0, hard_negatives=False)
    finally:
        index.close()
    assert len(rows) == len(plain) == 6
    for row in rows:
        source = next(s for s, c in chunks.items() if row["anchor"] in c.text)
        assert row["anchor"] not in row["positive"]
        assert row["negative"] != chunks[source].text and row["negative"] in {c.text for c in chunks.values()}
    assert all(set(r) == {"anchor", "positive"} for r in plain)
