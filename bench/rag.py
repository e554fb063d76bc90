"""RAG quality and speed on the built-in Python language reference, with a baseline in the same run.

Quality (the packaged question set, `bench/data/questions_python_reference.jsonl`: natural
questions, each labelled with the `pydoc_data` topic that answers it):
  - recall@1/5/10 and MRR@10 for dense, BM25, hybrid (RRF), hybrid + MMR, and hybrid + the
    LLM relevance scorer (the packaged reader's P(yes)); a cross-encoder only with
    --cross-encoder PATH (none ships offline: reported as not available). "strict" counts only
    the labelled topic; "lenient" also topics that contain it (e.g. `compound` holds `for`).
  - end to end on a subset: `ask()` with the packaged reader (greedy); answer accuracy (all
    answer keywords / any keyword in the answer) and citation correctness (a cited document's
    source is the labelled topic).
Speed:
  - indexing throughput (chunks/s, wall and CPU) of `index_paths` on the whole corpus, cold
    cache, vs the baseline: sentence-transformers defaults + a FAISS flat index;
  - query latency p50/p95 at 1k and 100k chunks (synthetic scale-up of the real chunk vectors
    and texts): the store's search path (the ANN index once the table passes its threshold),
    the same table's exact flat scan, and FAISS IndexFlatIP, interleaved query by query, with
    each one's top-10 agreement with FAISS's exact result; then the full dense, BM25 and hybrid
    retrieve (query embedding + dense + BM25 + RRF), all without the reader.

    .venv/bin/python bench/rag.py [--e2e 20] [--llm-questions 20] [--scales 1000,100000]

Prints one JSON line (progress goes to stderr). Needs `faiss-cpu` (a bench dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lmfoundry.eval.metrics import first_relevant_rank, hit_rate, mean_reciprocal_rank
from rag_support import (
    Question,
    accepted_sources,
    answer_matches,
    load_questions,
    percentile,
    scale_texts,
    scale_vectors,
)

STORE = "bench"
K = 10


def log(message: str) -> None:
    print(f"[rag bench] {message}", file=sys.stderr, flush=True)


class Timer:
    """Wall and CPU seconds of a block (CPU time is the steadier number on a shared machine)."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def bench_indexing(baseline: bool = True) -> dict[str, Any]:
    """Our index_paths (cold embedding cache) vs sentence-transformers + FAISS on the same chunks."""
    import numpy as np

    from lmfoundry.embed.sentence import load_embedder, resolve_embedder
    from lmfoundry.rag import index_paths

    with Timer() as load:
        embedder = load_embedder()
    log(f"embedder loaded in {load.wall:.1f}s ({embedder.dtype}); indexing the corpus")
    with Timer() as ours:
        report = index_paths(["builtin:python-reference"], STORE, progress=False)
    n = report.chunks_written
    log(f"indexed {n} chunks in {ours.wall:.1f}s; baseline next")
    from lmfoundry.rag.index import open_index

    index = open_index(STORE)
    texts = [c.text for c in index.store.chunks()]
    index.close()
    result = {
        "chunks": n,
        "tokens": int(sum(len(embedder.tokenizer(t)["input_ids"]) for t in texts)),
        "embedder_dtype": embedder.dtype,
        "embedder_load_s": round(load.wall, 2),
        "lmfoundry": _throughput(n, ours),
    }
    if not baseline:
        return result
    faiss = _faiss()
    from sentence_transformers import SentenceTransformer

    with Timer() as base:
        model = SentenceTransformer(str(resolve_embedder(None)[0]), device="cpu")
        vectors = model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(np.asarray(vectors, dtype=np.float32))
    result["baseline_st_faiss"] = _throughput(n, base)
    return result


def _throughput(n: int, timer: Timer) -> dict[str, float]:
    return {
        "wall_s": round(timer.wall, 2),
        "cpu_s": round(timer.cpu, 2),
        "chunks_per_s": round(n / timer.wall, 2),
        "chunks_per_cpu_s": round(n / timer.cpu, 2),
    }


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        sys.exit("bench/rag.py needs faiss-cpu for its baseline: .venv/bin/pip install faiss-cpu")
    return faiss


def ranking_scores(
    questions: Sequence[Question], search: Callable[[str], list[str]], label: str
) -> dict[str, Any]:
    """recall@1/5/10 and MRR@10, strict and lenient, of a function question -> ranked sources."""
    strict, lenient = [], []
    started = time.perf_counter()
    for i, q in enumerate(questions):
        sources = search(q.question)[:K]
        strict.append(first_relevant_rank(sources, accepted_sources(q.topic, lenient=False)))
        lenient.append(first_relevant_rank(sources, accepted_sources(q.topic, lenient=True)))
        if (i + 1) % 10 == 0:
            log(f"{label}: {i + 1}/{len(questions)}")
    out: dict[str, Any] = {"questions": len(questions)}
    for name, ranks in (("strict", strict), ("lenient", lenient)):
        out[name] = {f"recall@{k}": round(hit_rate(ranks, k), 3) for k in (1, 5, 10)}
        out[name]["mrr@10"] = round(mean_reciprocal_rank(ranks, K), 3)
    out["s_per_query"] = round((time.perf_counter() - started) / len(questions), 3)
    out["missed_at_5"] = [q.topic for q, r in zip(questions, lenient, strict=True) if r is None or r > 5]
    return out


def bench_retrieval(
    index: Any, questions: list[Question], llm_questions: int, llm_candidates: int, cross_encoder: str | None
) -> dict[str, Any]:
    from lmfoundry.models.load import load_hf_model
    from lmfoundry.rag.rerank import DEFAULT_LLM, llm_rerank
    from lmfoundry.rag.search import search

    def sources(hits: list[Any]) -> list[str]:
        return [h.chunk.source for h in hits]

    results: dict[str, Any] = {}
    for mode in ("dense", "bm25", "hybrid"):
        results[mode] = ranking_scores(
            questions, lambda q, m=mode: sources(search(index, q, K, mode=m)), mode
        )
    for spec in ("mmr", "mmr:0.8", "per-source"):
        results[f"hybrid+{spec}"] = ranking_scores(
            questions, lambda q, s=spec: sources(search(index, q, K, rerank=s)), spec
        )
    if cross_encoder:
        results["hybrid+cross-encoder"] = ranking_scores(
            questions,
            lambda q: sources(search(index, q, K, rerank=f"cross-encoder:{cross_encoder}")),
            "cross-encoder",
        )
    else:
        results["hybrid+cross-encoder"] = (
            "not available: no cross-encoder ships offline (--cross-encoder PATH)"
        )
    if llm_questions < 1:
        return results
    model, tokenizer = load_hf_model(DEFAULT_LLM)
    subset = spread(questions, llm_questions)

    def llm_search(q: str) -> list[str]:
        candidates = search(index, q, llm_candidates, mode="hybrid")
        return sources(llm_rerank(model, tokenizer, q, candidates, K))

    results["hybrid+llm"] = ranking_scores(subset, llm_search, "llm rerank")
    results["hybrid+llm"].update(model=DEFAULT_LLM, candidates=llm_candidates)
    results["hybrid_on_llm_subset"] = ranking_scores(
        subset, lambda q: sources(search(index, q, K, mode="hybrid")), "hybrid (llm subset)"
    )
    return results


def spread(items: Sequence[Question], n: int) -> list[Question]:
    """n items evenly spread over the list (deterministic, covers every part of the set)."""
    n = min(n, len(items))
    return [items[i * len(items) // n] for i in range(n)]


def bench_end_to_end(index: Any, questions: list[Question], max_new_tokens: int) -> dict[str, Any]:
    import lmfoundry
    from lmfoundry.rag.answer import ask
    from lmfoundry.types import SamplingParams

    reader = lmfoundry.load("smollm2-135m-instruct")
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    rows = []
    started = time.perf_counter()
    for i, q in enumerate(questions):
        answer = ask(index, q.question, reader, k=5, mode="hybrid", params=params)
        strict, lenient = answer_matches(answer.answer, q.answer_keywords)
        cited = [c["source"] for c in answer.citations]
        accepted = accepted_sources(q.topic, lenient=True)
        rows.append(
            {
                "topic": q.topic,
                "keywords_all": strict,
                "keywords_any": lenient,
                "cited": bool(cited),
                "cited_labelled": f"python-reference:{q.topic}" in cited,
                "cited_accepted": any(s in accepted for s in cited),
                "retrieved_labelled": any(h.chunk.source in accepted for h in answer.hits),
                "answer": answer.answer[:160],
            }
        )
        log(f"end to end {i + 1}/{len(questions)}")
    n = len(rows)

    def share(key: str) -> float:
        return round(sum(r[key] for r in rows) / n, 3)

    return {
        "reader": f"smollm2-135m-instruct ({reader.backend})",
        "questions": n,
        "max_new_tokens": max_new_tokens,
        "answer_accuracy_all_keywords": share("keywords_all"),
        "answer_accuracy_any_keyword": share("keywords_any"),
        "answers_with_citation": share("cited"),
        "citation_correct_strict": share("cited_labelled"),
        "citation_correct_lenient": share("cited_accepted"),
        "context_had_answer": share("retrieved_labelled"),
        "s_per_question": round((time.perf_counter() - started) / n, 2),
        "examples": rows[:3],
    }


def bench_latency(index: Any, questions: list[Question], scales: list[int], repeats: int) -> dict[str, Any]:
    """Store search and full hybrid retrieve at synthetic scales, vs FAISS flat."""
    from lmfoundry.embed.sentence import embed_texts

    real = index.store.chunks()
    real_vectors = index.store.vectors([c.chunk_id for c in real])
    query_texts = [q.question for q in questions]
    query_vectors = embed_texts(index.embedder, query_texts, use_cache=False, progress=False)
    out: dict[str, Any] = {"queries": len(query_texts) * repeats, "k": K}
    root = Path(tempfile.mkdtemp(prefix="rag-bench-scale-"))
    for n in scales:
        log(f"latency at {n} chunks")
        out[str(n)] = latency_at(index, n, real, real_vectors, query_texts, query_vectors, repeats, root)
    return out


def latency_at(
    index: Any,
    n: int,
    real: list[Any],
    real_vectors: Any,
    query_texts: list[str],
    query_vectors: Any,
    repeats: int,
    root: Path,
) -> dict[str, Any]:
    """One scale: a LanceDB store of n synthetic chunks, FAISS flat over the same vectors."""
    from lmfoundry import plugins
    from lmfoundry.rag.index import RagIndex
    from lmfoundry.rag.retrieve import retrieve
    from lmfoundry.types import Chunk

    vectors = scale_vectors(real_vectors, n)
    texts = scale_texts([c.text for c in real], n)
    chunks = [Chunk(f"syn{i:07d}", real[i % len(real)].source, t, 0, len(t), {}) for i, t in enumerate(texts)]
    store = plugins.get("vector_store", "lancedb")(root / f"n{n}", vectors.shape[1])
    with Timer() as write:
        for i in range(0, n, 10_000):  # 10k rows per write: how a large corpus is indexed
            store.replace_sources([], chunks[i : i + 10_000], vectors[i : i + 10_000])
    with Timer() as compact:  # what index_paths does after writing: builds the ANN index when large
        store.compact()
    ann = store.ann_index_stats()
    flat = _faiss().IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    # Interleaved per query, so load from other jobs hits the compared paths alike.
    timed = _interleaved(
        {
            "store_search_ms": lambda v: store.search(v, K),
            "store_flat_scan_ms": lambda v: store.search(v, K, exact=True),
            "baseline_faiss_flat_ms": lambda v: flat.search(v[None, :], K),
        },
        query_vectors,
        repeats,
    )
    scaled = RagIndex(f"scale{n}", root / f"n{n}", index.config, store, index.embedder)
    with Timer() as bm25_build:
        retrieve(scaled, query_texts[0], K, mode="bm25")  # builds and caches the BM25 index
    retrieval = _interleaved(
        {
            f"{mode}_retrieve_ms": lambda q, m=mode: retrieve(scaled, q, K, mode=m)
            for mode in ("dense", "bm25", "hybrid")
        },
        query_texts,
        1,
    )
    out = {
        "write_chunks_per_s": round(n / write.wall, 1),
        "compact_and_ann_build_s": round(compact.wall, 2),
        "ann_index": ann,
        **{name: _summary(times) for name, times in timed.items()},
        "store_vs_faiss_top10_agreement": _top_k_agreement(lambda v: store.search(v, K), flat, query_vectors),
        "flat_scan_vs_faiss_top10_agreement": _top_k_agreement(
            lambda v: store.search(v, K, exact=True), flat, query_vectors
        ),
        **{name: _summary(times) for name, times in retrieval.items()},
        "bm25_index_build_s": round(bm25_build.wall, 2),
    }
    store_p95 = out["store_search_ms"]["p95"]
    out["p95_ratio_flat_scan_over_store"] = round(out["store_flat_scan_ms"]["p95"] / store_p95, 2)
    out["p95_ratio_faiss_over_store"] = round(out["baseline_faiss_flat_ms"]["p95"] / store_p95, 2)
    store.close()
    return out


def _interleaved(
    fns: dict[str, Callable[[Any], Any]], queries: Sequence[Any], repeats: int
) -> dict[str, list[float]]:
    """Latencies (ms) of several functions, each query run through all of them in turn."""
    for fn in fns.values():
        fn(queries[0])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for q in queries:
            for name, fn in fns.items():
                start = time.perf_counter()
                fn(q)
                times[name].append((time.perf_counter() - start) * 1000)
    return times


def _summary(times_ms: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(times_ms, 50), 2), "p95": round(percentile(times_ms, 95), 2)}


def _top_k_agreement(search: Callable[[Any], Any], flat: Any, query_vectors: Any) -> float:
    """Share of FAISS's exact top-10 ids that `search`'s top 10 also returns (recall@10 vs exact)."""
    found = total = 0
    for v in query_vectors:
        _, ids = flat.search(v[None, :], K)
        exact = {f"syn{int(i):07d}" for i in ids[0]}
        got = {c.chunk_id for c, _ in search(v)}
        found += len(exact & got)
        total += len(exact)
    return round(found / total, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=Path, default=None, help="question JSONL (default: packaged set)")
    parser.add_argument("--e2e", type=int, default=20, help="questions answered end to end by the reader")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="answer length for the end-to-end run")
    parser.add_argument("--llm-questions", type=int, default=20, help="questions reranked by the LLM scorer")
    parser.add_argument("--llm-candidates", type=int, default=10, help="hybrid candidates the LLM rescores")
    parser.add_argument("--cross-encoder", default=None, help="a local CrossEncoder directory to rerank with")
    parser.add_argument("--scales", default="1000,100000", help="chunk counts for the latency runs")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the questions per latency run")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: baseline,e2e,llm,latency")
    parser.add_argument("--home", default=None, help="LMF_HOME to use (default: a fresh one, cold caches)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["LMF_HOME"] = args.home or tempfile.mkdtemp(prefix="rag-bench-home-")  # cold caches
    skip = set(filter(None, args.skip.split(",")))
    questions = load_questions(args.questions)
    from lmfoundry.rag.index import open_index

    started = time.perf_counter()
    result: dict[str, Any] = {
        "bench": "rag",
        "corpus": "builtin:python-reference",
        "questions": len(questions),
    }
    result["load_average_at_start"] = [round(x, 1) for x in os.getloadavg()]
    result["indexing"] = bench_indexing(baseline="baseline" not in skip)
    index = open_index(STORE)
    llm_n = 0 if "llm" in skip else args.llm_questions
    sections: list[tuple[str, Callable[[], Any]]] = [
        (
            "retrieval",
            lambda: bench_retrieval(index, questions, llm_n, args.llm_candidates, args.cross_encoder),
        )
    ]
    if "e2e" not in skip:
        subset = spread(questions, args.e2e)
        sections.append(("end_to_end", lambda: bench_end_to_end(index, subset, args.max_new_tokens)))
    if "latency" not in skip:
        scales = [int(s) for s in args.scales.split(",") if s]
        sections.append(("latency", lambda: bench_latency(index, questions, scales, args.repeats)))
    failed = False
    for name, run in sections:
        try:
            result[name] = run()
        except Exception as exc:  # a late failure must not lose the sections already measured
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed = True
        log(f"{name}: {json.dumps(result[name])[:2000]}")
    hybrid_rerank = [
        v["lenient"]["recall@5"]
        for k, v in result["retrieval"].items()
        if k.startswith("hybrid+") and isinstance(v, dict) and "lenient" in v and k != "hybrid+llm"
    ]
    result["goals"] = {
        "hybrid_rerank_recall@5>=0.9 (lenient, best reranker)": max(hybrid_rerank, default=0) >= 0.9,
        "store_p95_ms<50_at_100k": _p95_goal(result.get("latency", {}), "store_search_ms"),
        "hybrid_retrieve_p95_ms<50_at_100k": _p95_goal(result.get("latency", {}), "hybrid_retrieve_ms"),
    }
    result["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    result["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))
    return 1 if failed else 0


def _p95_goal(latency: dict[str, Any], key: str) -> bool | None:
    run = latency.get("100000")
    return None if not run or key not in run else run[key]["p95"] < 50


if __name__ == "__main__":
    raise SystemExit(main())
