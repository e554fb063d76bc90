"""Answer a question from a RAG store through a served model's endpoint, with citations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.models.load import load_tokenizer
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.remote import RemoteModel
from lmfoundry.pipeline.stage_kind import StageKind
from lmfoundry.rag.answer import ask
from lmfoundry.types import SamplingParams


@dataclass
class Options:
    store: str = "docs"
    question: str = ""
    url: str = ""
    """The server's base URL (usually `${deploy.url}`)."""
    model: str = ""
    """Model id to ask (usually `${deploy.base_model_id}` or `${deploy.model_id}`)."""
    tokenizer: str | None = None
    """A local model whose tokenizer counts prompt tokens exactly (usually the base model)."""
    context_length: int = 2048
    """Context the reader may fill (documents + question + answer room)."""
    k: int = 3
    mode: str = "hybrid"
    max_new_tokens: int = 160
    api_key: str | None = None
    require_citations: bool = False
    """Fail the stage when the answer cites no document."""


def run(ctx: StageContext, options: Options) -> dict[str, Any]:
    if not (options.question and options.url and options.model):
        raise InvalidInputError("rag-ask stage needs 'question', 'url' and 'model'")
    tokenizer = None
    if options.tokenizer:
        tokenizer = load_tokenizer(options.tokenizer)
    model = RemoteModel(options.url, options.model, api_key=options.api_key, tokenizer=tokenizer,
                        context_length=options.context_length)  # fmt: skip
    ctx.progress.note(options.question[:50])
    params = SamplingParams(temperature=0.0, max_new_tokens=options.max_new_tokens)
    answer = ask(options.store, options.question, model, k=options.k, mode=options.mode, params=params)  # type: ignore[arg-type]
    if options.require_citations and not answer.citations:
        raise LmfError(f"the answer cites no document: {answer.answer[:200]!r}")
    return {
        "question": options.question,
        "answer": answer.answer,
        "citations": answer.citations,
        "retrieved": [h.chunk.source for h in answer.hits],
        "notes": answer.notes,
    }


KIND = StageKind(Options, run, None, summary=(__doc__ or "").strip().splitlines()[0])
