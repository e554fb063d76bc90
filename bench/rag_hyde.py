"""HyDE query rewriting against no rewrite, paired, on one store and question file.

`lmf rag eval --rewrite hyde` gives each configuration's metrics with their own CIs; this script
gives what decides a default: the per-question paired difference (hyde minus none) with a 95%
bootstrap CI, for dense, hybrid and hybrid+per-source. The model's passages are appended to a
cache file as they are written, so a killed run resumes without asking again.

    .venv/bin/python bench/rag_hyde.py --store pyref [--questions FILE] [--model M] [--threads 1]

Prints one JSON object (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from lmfoundry.rag.index import open_index
from lmfoundry.rag.retrieval_eval import EvalQuestion, load_questions, run_config
from lmfoundry.rag.rewrite import hyde_query
from lmfoundry.rag.testset import lazy_generator, model_generator
from lmfoundry.stats import bootstrap_difference

CONFIGS = ("dense", "hybrid", "hybrid+per-source")
METRICS = ("recall@1", "recall@5", "mrr")


def rewritten(
    questions: list[EvalQuestion], model: str, threads: int | None, cache: Path
) -> list[EvalQuestion]:
    """The questions with their HyDE text, from `cache` where written before."""
    done = {}
    if cache.is_file():
        done = {r["question"]: r["hyde"] for r in map(json.loads, cache.read_text().splitlines())}
    generate = lazy_generator(lambda: model_generator(model, max_new_tokens=96, threads=threads))
    with cache.open("a", encoding="utf-8") as f:
        for i, q in enumerate(questions):
            if q.question not in done:
                done[q.question] = hyde_query(q.question, generate)
                f.write(json.dumps({"question": q.question, "hyde": done[q.question]}) + "\n")
                f.flush()
                print(f"hyde {i + 1}/{len(questions)}", file=sys.stderr, flush=True)
    return [replace(q, question=done[q.question]) for q in questions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--questions", type=Path, default=Path("bench/data/questions_python_reference.jsonl"))
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--cache", type=Path, default=Path("runs/rag_hyde_cache.jsonl"))
    args = parser.parse_args()
    questions = load_questions(args.questions)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    hyde = rewritten(questions, args.model, args.threads, args.cache)
    result: dict[str, object] = {
        "questions": len(questions),
        "rewrite_s": round(time.perf_counter() - started, 1),
    }
    index = open_index(args.store)
    try:
        for config in CONFIGS:
            none, rewrite = run_config(index, questions, config), run_config(index, hyde, config)
            result[config] = {
                m: bootstrap_difference(
                    [s[m] for s in none.per_question], [s[m] for s in rewrite.per_question]
                )
                | {
                    "none": sum(s[m] for s in none.per_question) / len(questions),
                    "hyde": sum(s[m] for s in rewrite.per_question) / len(questions),
                }
                for m in METRICS
            }
    finally:
        index.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
