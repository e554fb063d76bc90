"""`lmf rag`: index documents into a named store, search it, and answer questions with citations."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from lmfoundry.cli.common import (
    add_command_group,
    add_json_flag,
    add_sampling_options,
    add_subcommand,
    checked,
    plugin_name,
    print_result,
    sampling_overrides,
)
from lmfoundry.cli.rag_quality import add_length_prior_flag, add_quality_commands
from lmfoundry.errors import InvalidInputError
from lmfoundry.rag import Answer, ask, index_paths, list_stores, search
from lmfoundry.rag.answer import hit_to_dict
from lmfoundry.rag.index import store_path
from lmfoundry.rag.rerank import make_reranker
from lmfoundry.rag.retrieval_eval import reranker_warning
from lmfoundry.rag.stores.qdrant_store import connect_to
from lmfoundry.types import Hit, SamplingParams

DESCRIPTION = (
    "Ground a model in your documents. Stores live in $LMF_HOME/rag/NAME (LanceDB by default). "
    "Indexing is incremental: unchanged files cost nothing, deleted ones are removed."
)

_MODES = ["dense", "bm25", "hybrid"]
DEFAULT_RERANK = "per-source"
"""hybrid + per-source beat plain hybrid on the 68 Python-reference questions: recall@5 0.838 ->
0.926, MRR +0.027 (paired 95% CI [0.013, 0.042]), recall@1 unchanged (docs/benchmarks-rag.md)."""
_RERANK_HELP = (
    "rerank candidates: mmr, mmr:LAMBDA, per-source (one chunk per document; per-source:N for N), "
    "cross-encoder:PATH, llm or llm:MODEL, or a plugin's NAME[:ARG]"
)


def register(subparsers: Any) -> None:
    commands = add_command_group(subparsers, "rag", description=DESCRIPTION)
    _add_index(commands)
    _add_search(commands)
    _add_ask(commands)
    add_quality_commands(commands)
    stores = add_subcommand(
        commands, "stores", _stores, help="list the RAG stores", description="List the RAG stores."
    )
    add_json_flag(stores)


def _add_index(commands: Any) -> None:
    p = add_subcommand(
        commands,
        "index",
        _index,
        help="add or update documents in a store",
        description=(
            "Index files and directories (.txt .md .rst .html .pdf .jsonl) or builtin:python-reference. "
            "New and changed sources are (re)embedded; sources deleted under the given paths are removed."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="file, directory or builtin:python-reference")
    p.add_argument("--store", required=True, help="store name (created if missing)")
    p.add_argument(
        "--chunk-size",
        type=int,
        help="tokens per chunk (default: min(512, what the embedder reads: 254 for all-MiniLM-L6-v2))",
    )
    p.add_argument(
        "--overlap", type=int, help="tokens shared by consecutive chunks (default min(32, size/4))"
    )
    p.add_argument(
        "--embedder",
        help="all-MiniLM-L6-v2 (default), a tuned embedder's name (`lmf rag tune-embedder`) or a "
        "sentence-transformers directory",
    )
    p.add_argument(
        "--headers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="embed each chunk with its contextual header (document title > section path) in front "
        "(default: the store's setting, off for a new store)",
    )
    p.add_argument(
        "--backend",
        type=plugin_name("vector_store"),
        help="vector store for a new store: lancedb (default), qdrant or a plugin's",
    )
    p.add_argument(
        "--include", action="append", default=[], help="glob of files to index in directories (repeatable)"
    )
    p.add_argument("--exclude", action="append", default=[], help="glob of files to skip (repeatable)")
    _add_qdrant_options(p)
    add_json_flag(p)


def _add_qdrant_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(
        "qdrant server (qdrant stores only; default: local mode in the store folder)"
    )
    group.add_argument(
        "--qdrant-url",
        metavar="URL",
        help="keep the store's vectors on the Qdrant server at URL, e.g. http://qdrant:6333 (env "
        "LMF_QDRANT_URL); a store created with it remembers the URL, and a new store gets --backend qdrant",
    )
    group.add_argument(
        "--qdrant-api-key",
        metavar="KEY",
        help="API key of the Qdrant server (prefer env LMF_QDRANT_API_KEY: command lines are visible)",
    )


def _add_retrieval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", type=int, default=5, help="number of chunks (default 5)")
    p.add_argument(
        "--mode", choices=_MODES, default="hybrid", help="retrieval mode (default hybrid: RRF of both)"
    )
    p.add_argument(
        "--rerank",
        type=checked(_reranker_spec),
        default=DEFAULT_RERANK,
        metavar="SPEC",
        help=_RERANK_HELP + f" (default {DEFAULT_RERANK}: the best measured on the bundled corpus, "
        "docs/benchmarks-rag.md; none turns reranking off)",
    )
    p.add_argument("--source-prefix", help="only chunks whose source starts with this")
    p.add_argument(
        "--where", action="append", default=[], metavar="KEY=VALUE", help="exact metadata match (repeatable)"
    )
    _add_qdrant_options(p)


def _reranker_spec(spec: str) -> str | None:
    """The spec itself once it names a valid reranker (kept as text to match `lmf rag eval` rows);
    None for `none`."""
    if spec == "none":
        return None
    make_reranker(spec)
    return spec


def _add_search(commands: Any) -> None:
    p = add_subcommand(
        commands,
        "search",
        _search,
        help="retrieve the chunks that match a query",
        description="Search a store.",
    )
    p.add_argument("store", help="store name")
    p.add_argument("query", help="what to look for")
    _add_retrieval_options(p)
    add_length_prior_flag(p)
    add_json_flag(p)


def _add_ask(commands: Any) -> None:
    p = add_subcommand(
        commands,
        "ask",
        _ask,
        help="answer a question from a store, citing documents",
        description=(
            "Retrieve chunks, fit them into the model's context, and answer only from them, citing [n]. "
            "Greedy decoding unless --temperature is given."
        ),
    )
    p.add_argument("store", help="store name")
    p.add_argument("question", help="the question")
    p.add_argument(
        "--model",
        default="smollm2-135m-instruct",
        help="reader model: store name, packaged name, HF directory or .gguf (default: the packaged "
        "smollm2-135m-instruct)",
    )
    p.add_argument(
        "--cite",
        choices=["auto", "model", "forced"],
        default="auto",
        help="citations: auto (the model's own, else the document most similar to the answer, marked "
        '"attributed": true), model (only what the model wrote), forced (the answer starts '
        '"According to Document N", N chosen by the model\'s next-token probabilities)',
    )
    p.add_argument(
        "--compress", action="store_true", help="keep the question-similar sentences when over budget"
    )
    _add_retrieval_options(p)
    add_sampling_options(p)
    add_json_flag(p)


def _where(args: argparse.Namespace) -> dict[str, Any] | None:
    metadata = {}
    for item in args.where:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--where needs KEY=VALUE, got {item!r}")
        metadata[key] = value
    if not metadata and not args.source_prefix:
        return None
    return {"source_prefix": args.source_prefix, "metadata": metadata}


def _qdrant_scope(args: argparse.Namespace, backend: str | None) -> contextlib.AbstractContextManager[Any]:
    """`--qdrant-url`/`--qdrant-api-key` for the rag call inside the block; refused for a store (or
    `--backend`) that is not qdrant, instead of being ignored."""
    if not (args.qdrant_url or args.qdrant_api_key):
        return contextlib.nullcontext()
    flag = "--qdrant-url" if args.qdrant_url else "--qdrant-api-key"
    if backend not in (None, "qdrant"):
        raise InvalidInputError(
            f"{flag} applies only to qdrant stores, but store {args.store!r} uses backend {backend!r}"
        )

    return connect_to(args.qdrant_url, args.qdrant_api_key)


def _store_backend(name: str) -> str | None:
    return next((s["backend"] for s in list_stores() if s["name"] == name), None)


def _index(args: argparse.Namespace) -> int:
    backend = args.backend
    if args.qdrant_url or args.qdrant_api_key:
        if backend and backend != "qdrant":
            raise InvalidInputError(f"--qdrant-url/--qdrant-api-key need --backend qdrant, not {backend!r}")
        backend = backend or _store_backend(args.store) or "qdrant"
    with _qdrant_scope(args, backend):
        report = index_paths(
            args.paths,
            args.store,
            chunk_size=args.chunk_size,
            overlap=args.overlap,
            embedder=args.embedder,
            headers=args.headers,
            backend=backend,
            include=args.include,
            exclude=args.exclude,
            progress=not args.json,
        )
    return print_result(
        args,
        report.to_dict(),
        lambda: print(
            f"store {report.store}: {len(report.added)} added, {len(report.updated)} updated, "
            f"{len(report.removed)} removed, {report.unchanged} unchanged; "
            f"{report.chunks_written} chunks written, {report.texts_embedded} texts embedded"
        ),
    )


def _warn_measured_worse(args: argparse.Namespace) -> None:
    """Tell the user when `lmf rag eval` measured their reranker worse than none on this store."""
    warning = reranker_warning(store_path(args.store), args.mode, args.rerank)
    if warning:
        print(f"lmf: warning: {warning}", file=sys.stderr)


def _search(args: argparse.Namespace) -> int:
    _warn_measured_worse(args)
    with _qdrant_scope(args, _store_backend(args.store)):
        hits = search(
            args.store,
            args.query,
            k=args.k,
            mode=args.mode,
            rerank=args.rerank,
            where=_where(args),
            length_prior=args.length_prior,
        )
    return print_result(args, {"hits": [hit_to_dict(h) for h in hits]}, lambda: _print_hits(hits))


def _print_hits(hits: list[Hit]) -> None:
    for rank, hit in enumerate(hits):
        snippet = " ".join(hit.chunk.text.split())[:160]
        print(f"{rank}. {hit.score:.4f} {hit.chunk.source}\n   {snippet}")


def _ask(args: argparse.Namespace) -> int:
    _warn_measured_worse(args)
    params = SamplingParams(temperature=0.0, max_new_tokens=256).replace(**sampling_overrides(args))
    with _qdrant_scope(args, _store_backend(args.store)):
        answer = ask(
            args.store,
            args.question,
            args.model,
            k=args.k,
            mode=args.mode,
            rerank=args.rerank,
            where=_where(args),
            params=params,
            compress=args.compress,
            cite=args.cite,
        )
    for note in answer.notes:
        print(f"lmf: note: {note}", file=sys.stderr)
    return print_result(args, answer.to_dict(), lambda: _print_answer(answer))


def _print_answer(answer: Answer) -> None:
    print(answer.answer)
    for citation in answer.citations:
        how = f" ({citation['method']})" if citation.get("method", "model") != "model" else ""
        print(f"  [{citation['document']}] {citation['source']}{how}")


def _stores(args: argparse.Namespace) -> int:
    stores = list_stores()
    return print_result(args, {"stores": stores}, lambda: _print_stores(stores))


def _print_stores(stores: list[dict[str, Any]]) -> None:
    if not stores:
        print("no RAG stores yet: lmf rag index PATH --store NAME")
    for s in stores:
        print(f"{s['name']}\t{s['backend']}\t{s['embedder']}\tchunk {s['chunk_size']}/{s['overlap']}")
