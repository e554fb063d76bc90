"""Answer-level evaluation of `lmf rag ask`: run the reader on a question file exactly as `ask`
does, then score each answer (faithfulness to its citations, relevance, context precision and
recall, citation correctness, refusal on unanswerable questions) with bootstrap CIs.

The question file is JSONL; each line needs `question` and may carry `id`, `reference` (or
`answer`, a reference answer), `source`/`sources` (labelled source documents), `chunk_id`/
`chunk_ids` (labelled chunks) and `answerable` (false: the store does not hold the answer and the
reader should decline). Other fields are ignored, so a test set written by `lmf rag testset`
can be read as it is.

Empty and truncated answers are counted and reported beside the scores (a truncated answer is
one the reader stopped at `max_new_tokens`), so a good mean over few real answers cannot pass
for a good reader. The summary can be checked against a gates YAML of absolute thresholds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.eval.gates import GateReport, GateSpec, check_gates
from lmfoundry.eval.metrics import token_f1
from lmfoundry.eval.rag_answer_judge import Verdicts, judge_relevance, judge_support
from lmfoundry.eval.rag_answer_metrics import (
    citation_checks,
    context_precision,
    context_recall,
    refused,
    split_claims,
    strip_citations,
    summarize,
)
from lmfoundry.fsutil import read_jsonl
from lmfoundry.rag.answer import NO_ANSWER, Answer, ask
from lmfoundry.rag.search import opened
from lmfoundry.types import SamplingParams

if TYPE_CHECKING:
    from lmfoundry.eval.judges import JudgeBackend
    from lmfoundry.generate.engine import LoadedModel
    from lmfoundry.rag.index import RagIndex


@dataclass(frozen=True)
class RagQuestion:
    """One question, its optional reference answer and labels, and whether the store answers it."""

    id: str
    question: str
    reference: str = ""
    sources: tuple[str, ...] = ()
    chunk_ids: tuple[str, ...] = ()
    answerable: bool = True

    def labels(self) -> tuple[str, tuple[str, ...]]:
        """(chunk field to match, labels): source documents when given, else chunk ids."""
        return ("source", self.sources) if self.sources else ("chunk_id", self.chunk_ids)


def _strings(record: dict[str, Any], *keys: str, where: str) -> tuple[str, ...]:
    values: list[str] = []
    for key in keys:
        value = record.get(key)
        items = value if isinstance(value, list) else [] if value is None else [value]
        if not all(isinstance(v, str) and v for v in items):
            raise InvalidInputError(f"{where}: {key!r} must be a non-empty string or a list of them")
        values.extend(items)
    return tuple(dict.fromkeys(values))


def read_questions(path: str | Path) -> list[RagQuestion]:
    """The questions of a JSONL file, validated line by line."""
    path = Path(path)
    questions = []
    for line_no, record in read_jsonl(path, f"question file not found: {path}"):
        where = f"{path}:{line_no}"
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            raise InvalidInputError(f"{where}: each line needs a non-empty 'question'")
        answerable = record.get("answerable", True)
        if not isinstance(answerable, bool):
            raise InvalidInputError(f"{where}: 'answerable' must be true or false, got {answerable!r}")
        reference = record.get("reference", record.get("answer", ""))
        if not isinstance(reference, str):
            raise InvalidInputError(f"{where}: 'reference' must be a string")
        questions.append(
            RagQuestion(
                id=str(record.get("id", line_no)),
                question=question.strip(),
                reference=reference,
                sources=_strings(record, "source", "sources", where=where),
                chunk_ids=_strings(record, "chunk_id", "chunk_ids", where=where),
                answerable=answerable,
            )
        )
    if not questions:
        raise InvalidInputError(f"{path}: no questions")
    return questions


@dataclass(frozen=True)
class RagAnswerOptions:
    """How the reader is run (as `lmf rag ask`) and how much judging each answer gets."""

    k: int = 5
    mode: str = "hybrid"
    rerank: str | None = None
    cite: str = "auto"
    max_new_tokens: int = 256
    max_claims: int = 5
    """Sentences of an answer judged for faithfulness."""
    max_cited: int = 3
    """Cited documents each claim is checked against."""
    n_boot: int = 2000
    seed: int = 0


class _Recorder:
    """The reader, handed to `ask` unchanged, remembering how its last generation finished
    (`ask` returns the text only, and a truncated answer must be counted)."""

    def __init__(self, model: LoadedModel) -> None:
        self._model = model
        self.finish: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def generate(self, prompt: Any, params: SamplingParams | None = None, **overrides: Any) -> Any:
        result = self._model.generate(prompt, params, **overrides)
        self.finish = str(getattr(result, "finish_reason", "stop"))
        return result


def deterministic_scores(q: RagQuestion, answer: Answer, refusal: bool) -> dict[str, float | None]:
    """Context precision/recall, citation checks, refusal and reference F1 of one answer."""
    if not q.answerable:
        return {"refusal": float(refusal)}
    key, labels = q.labels()
    found = [getattr(h.chunk, key) for h in answer.hits]
    cited = [getattr(answer.hits[c["document"]].chunk, key) for c in answer.citations]
    scores: dict[str, float | None] = {"false_refusal": float(refusal)}
    if labels:
        scores["context_precision"] = context_precision([f in labels for f in found])
        scores["context_recall"] = context_recall(found, labels)
    scores.update(citation_checks(answer.answer, cited, len(answer.hits), labels))
    if q.reference:
        scores["reference_f1"] = token_f1(strip_citations(answer.answer), q.reference)
    return scores


def judged_scores(
    judge: JudgeBackend, q: RagQuestion, answer: Answer, options: RagAnswerOptions
) -> tuple[dict[str, float | None], Verdicts]:
    """Faithfulness to the cited chunks, citation support and answer relevance of one answer."""
    verdicts = Verdicts()
    documents = list(dict.fromkeys(c["document"] for c in answer.citations))[: options.max_cited]
    contexts = {d: answer.hits[d].chunk.text for d in documents}
    for claim in split_claims(answer.answer, options.max_claims):
        judge_support(judge, claim, contexts, verdicts, seed=options.seed)
    judge_relevance(judge, q.question, answer.answer, q.reference, verdicts, seed=options.seed)
    scores = {
        "faithfulness": verdicts.faithfulness(),
        "citation_support": verdicts.citation_support(documents),
        "answer_relevance": verdicts.relevance,
    }
    return scores, verdicts


def evaluate_question(
    index: RagIndex,
    reader: LoadedModel,
    judge: JudgeBackend | None,
    q: RagQuestion,
    options: RagAnswerOptions,
) -> dict[str, Any]:
    """Ask `q` the way `lmf rag ask` does and score the answer (one row of the results)."""
    params = SamplingParams(temperature=0.0, max_new_tokens=options.max_new_tokens)
    recorder = _Recorder(reader)
    answer = ask(index, q.question, cast("LoadedModel", recorder), k=options.k, mode=options.mode,
                 rerank=options.rerank, params=params, cite=options.cite)  # fmt: skip
    text = answer.answer
    truncated = recorder.finish == "length" or (
        recorder.finish is None and reader.count_tokens(text) >= options.max_new_tokens
    )
    refusal = refused(text, NO_ANSWER)
    scores = deterministic_scores(q, answer, refusal)
    verdicts = Verdicts()
    if q.answerable and (refusal or not text.strip()):
        scores["answer_relevance"] = 0.0  # a non-answer to an answerable question (as in ragas)
    elif q.answerable and judge is not None:
        judged, verdicts = judged_scores(judge, q, answer, options)
        scores.update(judged)
    return {
        "id": q.id,
        "question": q.question,
        "answerable": q.answerable,
        "answer": text,
        "citations": answer.citations,
        "context": [{"source": h.chunk.source, "chunk_id": h.chunk.chunk_id} for h in answer.hits],
        "empty": not text.strip(),
        "truncated": truncated,
        "refused": refusal,
        "scores": scores,
        "judge": verdicts.to_dict(),
    }


def evaluate_answers(
    store: str | RagIndex,
    questions: Sequence[RagQuestion],
    reader: LoadedModel,
    judge: JudgeBackend | None,
    options: RagAnswerOptions | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every question asked and scored; the summary holds each metric's mean, CI and n.

    Without a judge only the deterministic metrics are computed (faithfulness, citation support
    and answer relevance need one). `on_row` sees each scored row as soon as it exists.
    """
    options = options or RagAnswerOptions()
    if not questions:
        raise InvalidInputError("no questions to evaluate")
    rows = []
    with opened(store) as index:
        for q in questions:
            rows.append(evaluate_question(index, reader, judge, q, options))
            if on_row:
                on_row(rows[-1])
    return {
        "reader": reader.name,
        "options": dataclasses.asdict(options),
        "summary": summarize(rows, options.n_boot, options.seed),
        "rows": rows,
    }


def check_answer_gates(spec: GateSpec, result: dict[str, Any]) -> GateReport:
    """Absolute gates (`min`/`max` on a metric's mean, `empty_rate`, `truncated_rate`) on a result.

    Relative, latency and cost gates compare two models and do not apply here: refused. A gate on
    a metric no question produced (e.g. `refusal` without unanswerable questions) is an error
    naming the metrics that exist.
    """
    if spec.relative or spec.latency_p95_s or spec.cost_per_1m_tokens:
        raise LmfError(
            "RAG answer gates take only `absolute` gates (relative, latency and cost gates compare two models)"
        )
    summary = result["summary"]
    metrics = {name: {"challenger": m["mean"]} for name, m in summary["metrics"].items() if m["n"]}
    for rate in ("empty_rate", "truncated_rate"):
        metrics[rate] = {"challenger": summary[rate]}
    report = check_gates(spec, {"metrics": metrics})
    return dataclasses.replace(report, context={})
