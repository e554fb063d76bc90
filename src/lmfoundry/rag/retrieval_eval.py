"""Measure retrieval on a question set: recall@k, MRR and nDCG@k per configuration, with CIs.

A configuration is `MODE[+RERANK]` (`hybrid`, `hybrid+per-source`, `dense+mmr:0.8`, ...). Each
question names the source document(s) that answer it; a hit counts by its chunk's source, and a
source counts once (its second chunk in a ranking adds nothing to nDCG, and the first relevant
rank is that of its first chunk). Every configuration returns its top 10 (`K`), so recall@1/5/10
come from one ranking per question and configuration.

The table is saved next to the store (`retrieval_eval.json`) so `lmf rag search`/`ask` can warn
when the reranker a user picks measured worse than no reranker on that store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.fsutil import atomic_write_text, read_jsonl
from lmfoundry.rag.index import RagIndex
from lmfoundry.rag.rerank import make_reranker
from lmfoundry.rag.retrieve import LENGTH_PRIOR, MODES, STOPWORDS, bm25_tokens
from lmfoundry.rag.search import search
from lmfoundry.stats import bootstrap_difference, bootstrap_mean

K = 10
RECALL_AT = (1, 5, 10)
NDCG_AT = 10
TABLE_FILE = "retrieval_eval.json"
DEFAULT_CONFIGS = ("dense", "bm25", "hybrid", "hybrid+per-source", "hybrid+mmr", "hybrid+mmr:0.8")
PYREF_PREFIX = "python-reference:"
QUESTION_WORDS = frozenset(
    [
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "does",
        "do",
        "did",
        "can",
        "could",
        "should",
        "would",
        "is",
        "are",
        "was",
        "i",
        "you",
        "we",
        "my",
        "your",
        "me",
        "use",
        "used",
        "using",
        "happens",
        "happen",
        "mean",
        "means",
    ]
)
"""Words that ask rather than say what is asked about (dropped by the `keywords` rewrite)."""


@dataclass(frozen=True)
class EvalQuestion:
    """A question and the source documents whose chunks answer it."""

    question: str
    sources: tuple[str, ...]
    chunk_id: str | None = None


def parse_question(row: dict[str, Any], where: str) -> EvalQuestion:
    """One JSONL row: {"question", "source" | "sources" | "topic", ["chunk_id"]}.

    `topic` is the packaged Python-reference set's label (source `python-reference:TOPIC`).
    """
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InvalidInputError(f'{where}: expected a non-empty "question"')
    if isinstance(row.get("sources"), list) and row["sources"]:
        sources = tuple(str(s) for s in row["sources"])
    elif isinstance(row.get("source"), str) and row["source"]:
        sources = (row["source"],)
    elif isinstance(row.get("topic"), str) and row["topic"]:
        sources = (PYREF_PREFIX + row["topic"],)
    else:
        raise InvalidInputError(f'{where}: expected "source", "sources" or "topic" naming the answer')
    chunk_id = row.get("chunk_id")
    return EvalQuestion(question.strip(), sources, str(chunk_id) if chunk_id else None)


def load_questions(path: Path) -> list[EvalQuestion]:
    """Questions from a JSONL file (what `lmf rag testset` writes, or a hand-written set)."""
    rows = read_jsonl(path, f"no question file {path}")
    questions = [parse_question(row, f"{path}:{line}") for line, row in rows]
    if not questions:
        raise InvalidInputError(f"{path}: no questions")
    return questions


def split_config(config: str) -> tuple[str, str | None]:
    """`MODE[+RERANK]` -> (mode, rerank spec or None), checked before anything runs."""
    mode, _, rerank = config.partition("+")
    if mode not in MODES:
        raise InvalidInputError(
            f"unknown retrieval mode {mode!r} in configuration {config!r} (known: {', '.join(MODES)})"
        )
    if rerank:
        make_reranker(rerank)
    return mode, rerank or None


def first_relevant_rank(sources: Sequence[str], relevant: Sequence[str]) -> int | None:
    """1-based rank of the first hit from a relevant source (None if none)."""
    return next((i for i, s in enumerate(sources, start=1) if s in relevant), None)


def ndcg(sources: Sequence[str], relevant: Sequence[str], k: int) -> float:
    """nDCG@k with binary gains, each relevant source counted at its first occurrence only."""
    seen: set[str] = set()
    dcg = 0.0
    for rank, source in enumerate(sources[:k], start=1):
        if source in relevant and source not in seen:
            seen.add(source)
            dcg += 1.0 / math.log2(rank + 1)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(set(relevant)), k) + 1))
    return dcg / ideal if ideal else 0.0


def question_scores(sources: Sequence[str], relevant: Sequence[str]) -> dict[str, float]:
    """Per-question values whose means are the table's metrics."""
    rank = first_relevant_rank(sources[:K], relevant)
    scores = {f"recall@{k}": float(rank is not None and rank <= k) for k in RECALL_AT}
    scores["mrr"] = 1.0 / rank if rank else 0.0
    scores[f"ndcg@{NDCG_AT}"] = ndcg(sources, relevant, NDCG_AT)
    return scores


Rewrite = Callable[[str], str]


def keyword_query(question: str) -> str:
    """The `keywords` query rewrite: the question without question words and stop words (so
    "How do I make a generator function?" searches "make generator function")."""
    words = [w for w in bm25_tokens(question) if w not in QUESTION_WORDS and w not in STOPWORDS]
    return " ".join(words) or question


REWRITES: dict[str, Rewrite] = {"none": lambda q: q, "keywords": keyword_query}


@dataclass
class ConfigResult:
    config: str
    per_question: list[dict[str, float]] = field(default_factory=list)
    ranks: list[int | None] = field(default_factory=list)


def rank_sources(
    index: RagIndex, question: str, mode: str, rerank: str | None, length_prior: float = LENGTH_PRIOR
) -> list[str]:
    hits = search(index, question, K, mode=mode, rerank=rerank, length_prior=length_prior)
    return [h.chunk.source for h in hits]


def run_config(
    index: RagIndex,
    questions: Sequence[EvalQuestion],
    config: str,
    rewrite: Rewrite = REWRITES["none"],
    on_question: Callable[[], None] | None = None,
    length_prior: float = LENGTH_PRIOR,
) -> ConfigResult:
    mode, rerank = split_config(config)
    result = ConfigResult(config)
    for q in questions:
        sources = rank_sources(index, rewrite(q.question), mode, rerank, length_prior)
        result.per_question.append(question_scores(sources, q.sources))
        result.ranks.append(first_relevant_rank(sources, q.sources))
        if on_question:
            on_question()
    return result


def summarize(results: Sequence[ConfigResult], n_boot: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per configuration: each metric's mean and 95% bootstrap CI; a reranked
    configuration also gets its MRR difference from the same mode without reranker (paired CI)."""
    by_config = {r.config: r for r in results}
    rows = []
    for r in results:
        row: dict[str, Any] = {"config": r.config, "questions": len(r.per_question)}
        for metric in r.per_question[0]:
            row[metric] = bootstrap_mean([s[metric] for s in r.per_question], n_boot, seed)
        base = by_config.get(r.config.partition("+")[0])
        if base is not None and base is not r:
            row["mrr_vs_no_rerank"] = bootstrap_difference(
                [s["mrr"] for s in base.per_question], [s["mrr"] for s in r.per_question], n_boot, seed
            )
        rows.append(row)
    return rows


def evaluate(
    index: RagIndex,
    questions: Sequence[EvalQuestion],
    configs: Sequence[str] = DEFAULT_CONFIGS,
    *,
    rewrite: str = "none",
    n_boot: int = 2000,
    progress: Callable[[str], Callable[[], None]] | None = None,
    length_prior: float = LENGTH_PRIOR,
) -> dict[str, Any]:
    """The table for `configs` on `questions` (every configuration checked before any runs)."""
    if not questions:
        raise InvalidInputError("no questions to evaluate")
    for config in configs:
        split_config(config)
    if rewrite not in REWRITES:
        raise InvalidInputError(f"unknown query rewrite {rewrite!r} (known: {', '.join(REWRITES)})")
    if length_prior < 0:
        raise InvalidInputError(f"the length prior must be >= 0, got {length_prior}")
    results = [
        run_config(index, questions, c, REWRITES[rewrite], progress(c) if progress else None, length_prior)
        for c in configs
    ]
    return {
        "store": index.name,
        "embedder": index.config.embedder,
        "questions": len(questions),
        "rewrite": rewrite,
        "length_prior": length_prior,
        "k": K,
        "rows": summarize(results, n_boot),
    }


def save_table(index: RagIndex, table: dict[str, Any]) -> Path:
    path = index.path / TABLE_FILE
    atomic_write_text(path, json.dumps(table, indent=2))
    return path


def load_table(store_dir: Path) -> dict[str, Any] | None:
    path = store_dir / TABLE_FILE
    if not path.is_file():
        return None
    try:
        table: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return table


def reranker_warning(store_dir: Path, mode: str, rerank: str | None) -> str | None:
    """A warning when the store's saved table shows `mode+rerank` with a lower MRR than `mode`
    alone (None when there is no reranker, no table, or no such row)."""
    if not rerank:
        return None
    table = load_table(store_dir)
    rows = {row["config"]: row for row in (table or {}).get("rows", [])}
    base, ranked = rows.get(mode), rows.get(f"{mode}+{rerank}")
    if base is None or ranked is None:
        return None
    before, after = base["mrr"]["mean"], ranked["mrr"]["mean"]
    if after >= before:
        return None
    diff = ranked.get("mrr_vs_no_rerank", {})
    sure = " (95% CI of the difference below 0)" if diff.get("ci_high", 0.0) < 0 else ""
    return (
        f"--rerank {rerank} measured worse than no reranker on this store: MRR {after:.3f} vs "
        f"{before:.3f} for {mode} alone{sure}, recall@1 {ranked['recall@1']['mean']:.3f} vs "
        f"{base['recall@1']['mean']:.3f} ({table.get('questions') if table else '?'} questions, "
        "`lmf rag eval`)"
    )


def format_table(table: dict[str, Any]) -> str:
    """Markdown table: each metric as mean [CI low, CI high]."""
    metrics = [f"recall@{k}" for k in RECALL_AT] + ["mrr", f"ndcg@{NDCG_AT}"]
    lines = [
        "| configuration | " + " | ".join(metrics) + " |",
        "|---" * (len(metrics) + 1) + "|",
    ]
    for row in table["rows"]:
        cells = [f"{row[m]['mean']:.3f} [{row[m]['ci_low']:.2f}, {row[m]['ci_high']:.2f}]" for m in metrics]
        lines.append(f"| {row['config']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
