"""Answer a question from retrieved chunks with citations: fit the context to the reader's
budget, number the documents, and map the cited numbers back to sources.

The context budget is computed from the actual model: context_length minus the tokens of the
prompt without documents (system + instructions + question, through the chat template when the
model has one) minus the answer room (max_new_tokens). Documents are added in rank order; one
that does not fit is dropped (and reported) while smaller later ones may still fit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmfoundry.embed.sentence import embed_texts
from lmfoundry.errors import InvalidInputError
from lmfoundry.generate.engine import load_model, run_stream
from lmfoundry.rag import cite as cites
from lmfoundry.rag.injection import screen_hits
from lmfoundry.rag.rerank import Reranker
from lmfoundry.rag.search import opened, search
from lmfoundry.types import Hit, Message, SamplingParams

if TYPE_CHECKING:
    from lmfoundry.embed.sentence import Embedder
    from lmfoundry.generate.engine import LoadedModel
    from lmfoundry.rag.index import RagIndex

NO_ANSWER = "The context does not say."
SYSTEM_PROMPT = (
    "Answer the question using only the information in the context. Be concise and relevant. "
    "Cite the number of every document you use in square brackets, like [0] or [0, 2]. "
    f'If the answer cannot be deduced from the context, reply exactly: "{NO_ANSWER}"'
)
USER_TEMPLATE = (
    "Context:\n{context}\n---\nNow here is the question you need to answer.\n\nQuestion: {question}"
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class Answer:
    """The reader's answer, the documents it cited, the hits it saw and what did not fit."""

    answer: str
    citations: list[dict[str, Any]]
    hits: list[Hit]
    dropped: list[Hit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "citations": self.citations,
            "hits": [hit_to_dict(h) for h in self.hits],
            "dropped": [hit_to_dict(h) for h in self.dropped],
            "notes": self.notes,
        }


def hit_to_dict(hit: Hit) -> dict[str, Any]:
    c = hit.chunk
    return {"source": c.source, "chunk_id": c.chunk_id, "text": c.text, "score": hit.score}


def format_document(number: int, text: str) -> str:
    return f"Document {number}:::\n{text}"


def build_messages(question: str, texts: Sequence[str]) -> list[Message]:
    """System instruction + the numbered documents and the question."""
    context = "\n\n".join(format_document(i, t) for i, t in enumerate(texts))
    return [
        Message("system", SYSTEM_PROMPT),
        Message("user", USER_TEMPLATE.format(context=context, question=question)),
    ]


def fit_documents(costs: Sequence[int], budget: int) -> tuple[list[int], list[int]]:
    """Indices kept (in rank order, while the running total fits `budget`) and dropped."""
    kept, dropped, used = [], [], 0
    for i, cost in enumerate(costs):
        if used + cost <= budget:
            kept.append(i)
            used += cost
        else:
            dropped.append(i)
    return kept, dropped


def trim_repetition(answer: str, min_chars: int = 30) -> str:
    """`answer` cut before the first sentence that repeats an earlier one word for word.

    Small readers often give one right sentence and then loop on another until max_tokens
    (greedy decoding; a repetition penalty makes the 135M model wander off instead, as tried on
    the quickstart question). A repeat adds nothing, and the cut also drops the half sentence
    max_tokens left at the end. Sentences shorter than `min_chars` (list markers, code lines)
    may repeat freely.
    """
    seen: set[str] = set()
    end = 0
    for sentence in _SENTENCE.split(answer):
        start = answer.find(sentence, end)
        end = start + len(sentence)
        key = " ".join(sentence.split()).lower()
        if len(key) < min_chars:
            continue
        if key in seen:
            return answer[:start].rstrip()
        seen.add(key)
    return answer


def parse_citations(answer: str, n_documents: int) -> list[int]:
    """Document numbers cited as [0], [0, 2] or 'Document 1', in order of first mention."""
    numbers = [int(label) for label in cites.cited_labels(answer) if label.isdigit()]
    return [n for n in numbers if 0 <= n < n_documents]


def citations_to_sources(numbers: Sequence[int], hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [{"document": n, "source": hits[n].chunk.source} for n in numbers]


def prompt_tokens(model: LoadedModel, messages: Sequence[Message]) -> int:
    """Tokens the prompt will take, through the model's chat template when it has one."""
    prompt_ids = getattr(model, "prompt_ids", None)
    if prompt_ids is not None:
        return len(prompt_ids(list(messages)))
    return sum(model.count_tokens(m.content) + 8 for m in messages)


def context_budget(model: LoadedModel, question: str, answer_tokens: int) -> int:
    """Tokens left for documents: context length - prompt without documents - answer room."""
    return model.context_length - prompt_tokens(model, build_messages(question, [])) - answer_tokens


def document_costs(count_tokens: Callable[[str], int], texts: Sequence[str]) -> list[int]:
    """Tokens each numbered document adds (its header, text and the blank line between)."""
    return [count_tokens(format_document(i, t) + "\n\n") for i, t in enumerate(texts)]


def compress_texts(
    question: str, texts: Sequence[str], embedder: Embedder, budget: int, count_tokens: Callable[[str], int]
) -> list[str]:
    """Keep the sentences most similar to the question (in their original order) within budget."""

    sentences = [[s for s in _SENTENCE.split(t) if s.strip()] for t in texts]
    flat = [(d, j, s) for d, sents in enumerate(sentences) for j, s in enumerate(sents)]
    if not flat:
        return list(texts)
    vectors = embed_texts(embedder, [question] + [s for _, _, s in flat], use_cache=False, progress=False)
    similarity = vectors[1:] @ vectors[0]
    keep: set[tuple[int, int]] = set()
    for i in sorted(range(len(flat)), key=lambda i: -float(similarity[i])):
        trial = keep | {(flat[i][0], flat[i][1])}
        rebuilt = _rebuild(sentences, trial)
        if sum(document_costs(count_tokens, [t for t in rebuilt if t])) <= budget:
            keep = trial
    return _rebuild(sentences, keep)


def _rebuild(sentences: list[list[str]], keep: set[tuple[int, int]]) -> list[str]:
    return [" ".join(s for j, s in enumerate(sents) if (d, j) in keep) for d, sents in enumerate(sentences)]


def plan_context(
    question: str,
    hits: Sequence[Hit],
    model: LoadedModel,
    answer_tokens: int,
    embedder: Embedder | None = None,
) -> tuple[list[Hit], list[str], list[Hit], list[str]]:
    """(kept hits, their texts for the prompt, dropped hits, notes) for the model's budget.

    With an `embedder`, hits that do not fit are compressed first (question-similar sentences).
    """
    budget = context_budget(model, question, answer_tokens)
    texts = [h.chunk.text for h in hits]
    costs = document_costs(model.count_tokens, texts)
    kept, dropped = fit_documents(costs, max(budget, 0))
    notes: list[str] = []
    if dropped and embedder is not None and budget > 0:
        texts = compress_texts(question, texts, embedder, budget, model.count_tokens)
        keep_hits = [(h, t) for h, t in zip(hits, texts, strict=True) if t]
        notes.append(f"compressed {len(hits)} documents to fit {budget} context tokens")
        return (
            [h for h, _ in keep_hits],
            [t for _, t in keep_hits],
            [h for h, t in zip(hits, texts, strict=True) if not t],
            notes,
        )
    if hits and not kept:
        raise InvalidInputError(
            f"not even one document fits the context of {model.context_length} tokens: the best one needs "
            f"{costs[0]} tokens but only {max(budget, 0)} are left after the prompt and {answer_tokens} "
            "tokens of answer room (use a smaller chunk size, fewer max-new-tokens, compression, "
            "or a model with a longer context)"
        )
    if dropped:
        notes.append(
            f"dropped {len(dropped)} of {len(hits)} documents that did not fit {budget} context tokens"
        )
    return [hits[i] for i in kept], [texts[i] for i in kept], [hits[i] for i in dropped], notes


def generate_from_ids(model: LoadedModel, ids: list[int], params: SamplingParams) -> str:
    """Generate after raw prompt ids (used to continue a forced answer prefix)."""

    result = None
    for event in run_stream(model.runtime, ids, params):
        result = event.result or result
    return result.text if result is not None else ""


def answer_with_citations(
    model: LoadedModel,
    question: str,
    kept: Sequence[Hit],
    texts: Sequence[str],
    params: SamplingParams,
    cite: str = "auto",
    embedder: Embedder | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """The reader's answer and its citations under a citation mode (see `lmfoundry.rag.cite`)."""

    cites.check_mode(cite)
    messages = build_messages(question, texts)
    if cite == "forced":
        prompt = model.prompt_ids(messages)
        text, choice = cites.forced_answer(
            model, prompt, len(kept), lambda ids: generate_from_ids(model, ids, params)
        )
        answer = trim_repetition(text.strip())
        numbers = parse_citations(answer, len(kept))
        return answer, [
            cites.citation(
                n,
                kept[n].chunk.source,
                "forced" if choice and n == choice.document else "model",
                choice.probability if choice and n == choice.document else None,
            )
            for n in numbers
        ]
    answer = trim_repetition(model.generate(messages, params).text.strip())
    sources = [h.chunk.source for h in kept]
    return answer, cite_answer(answer, sources, texts, cite, lambda: embedder)


def cite_answer(
    answer: str,
    sources: Sequence[str],
    texts: Sequence[str],
    cite: str = "auto",
    embedder: Callable[[], Embedder | None] = lambda: None,
) -> list[dict[str, Any]]:
    """Citations of a finished answer over numbered documents (`cite` "auto" or "model").

    The documents the answer cites itself; in "auto" mode an answer that cites none (and does not
    decline) is attributed to the document closest to it by `embedder()`, which is called only
    then (loading one takes seconds). The studio's RAG chat uses this on its streamed answers.
    """
    numbers = parse_citations(answer, len(texts))
    if numbers or cite == "model" or cites.declined(answer, NO_ANSWER):
        return [cites.citation(n, sources[n], "model") for n in numbers]
    found = embedder()
    choice = cites.attribute_by_similarity(found, answer, texts) if found is not None else None
    if choice is None:
        return []
    return [cites.citation(choice.document, sources[choice.document], "similarity", choice.probability)]


def ask(
    store: str | RagIndex,
    question: str,
    model: str | LoadedModel,
    k: int = 5,
    *,
    mode: str = "hybrid",
    rerank: str | Reranker | None = None,
    where: Any = None,
    params: SamplingParams | None = None,
    compress: bool = False,
    cite: str = "auto",
    screen_injection: bool = False,
) -> Answer:
    """Retrieve k chunks for `question`, let `model` answer from them, and return the answer
    with its citations mapped to sources. Greedy decoding unless `params` says otherwise.

    `cite`: "auto" (the model's own citations, else an attribution marked `"attributed": true`),
    "model" (only what the model wrote) or "forced" (the answer starts "According to Document N",
    N chosen by the model); see `lmfoundry.rag.cite`. `screen_injection` drops retrieved chunks
    that look like prompt injection (`lmfoundry.rag.injection`) and notes which.
    """
    cites.check_mode(cite)
    params = params or SamplingParams(temperature=0.0, max_new_tokens=256)
    with opened(store) as index:
        hits = search(index, question, k=k, mode=mode, rerank=rerank, where=where)
        screened: list[str] = []
        if screen_injection:
            hits, flagged = screen_hits(hits)
            screened = [
                f"dropped {h.chunk.source} (possible prompt injection: {', '.join(s)})" for h, s in flagged
            ]
        # forced citations read the transformers tokenizer: keep auto off the llama.cpp fast path
        reader = load_model(model, fast_gguf=cite != "forced") if isinstance(model, str) else model
        kept, texts, dropped, notes = plan_context(
            question, hits, reader, params.max_new_tokens, index.embedder if compress else None
        )
        notes = screened + notes
        if not kept:
            return Answer(NO_ANSWER, [], [], dropped, notes + ["no documents retrieved"])
        answer, citations = answer_with_citations(reader, question, kept, texts, params, cite, index.embedder)
    return Answer(answer, citations, kept, dropped, notes)
