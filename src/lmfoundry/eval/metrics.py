"""Text, QA, retrieval and RAG metrics, all on a 0-1 scale (higher is better unless named otherwise).

ROUGE comes from `rouge_score` and BLEU/chrF from `sacrebleu` (divided by 100 so every metric
shares one scale and one gate syntax); `evaluate.load` is never used because it needs the hub.
Per-example functions feed the paired bootstrap; corpus BLEU/chrF are reported beside the means.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.rag.cite import cited_labels

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")

# --- text overlap -------------------------------------------------------------------------------


@functools.cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)


def rouge_scores(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F-measures with Porter stemming. rougeLsum splits sentences at newlines."""
    scores = _rouge_scorer().score(reference, prediction)
    return {key: float(scores[key].fmeasure) for key in ROUGE_KEYS}


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean per-example ROUGE F-measures (the aggregation `evaluate`'s rouge uses by default)."""
    _check_pairs(predictions, references)
    per_example = [rouge_scores(p, r) for p, r in zip(predictions, references, strict=True)]
    return {key: sum(s[key] for s in per_example) / len(per_example) for key in ROUGE_KEYS}


def sentence_bleu(prediction: str, reference: str) -> float:
    """sacrebleu sentence BLEU (exponential smoothing), scaled to 0-1."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(prediction, [reference]).score) / 100.0


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (13a tokenizer), scaled to 0-1."""
    import sacrebleu

    _check_pairs(predictions, references)
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score) / 100.0


def sentence_chrf(prediction: str, reference: str) -> float:
    """sacrebleu sentence chrF (character n-gram F-score, beta=2), scaled to 0-1."""
    import sacrebleu

    return float(sacrebleu.sentence_chrf(prediction, [reference]).score) / 100.0


def corpus_chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus chrF, scaled to 0-1."""
    import sacrebleu

    _check_pairs(predictions, references)
    return float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score) / 100.0


# --- short answers (SQuAD conventions) ----------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lowercase, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalized strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall over normalized bags of words."""
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    common = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


# --- language modelling -------------------------------------------------------------------------


def perplexity(token_nlls: Sequence[float]) -> float:
    """exp(mean negative log-likelihood per token), from natural-log NLLs."""
    if len(token_nlls) == 0:
        raise InvalidInputError("perplexity needs at least one token NLL")
    return math.exp(sum(token_nlls) / len(token_nlls))


def token_nlls(model: Any, tokenizer: Any, text: str) -> list[float]:
    """Per-token NLLs of `text` under a causal LM (each token predicted from the ones before it)."""
    import torch

    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    if ids.shape[1] < 2:
        raise InvalidInputError("perplexity needs a text of at least two tokens")
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()
    log_probs = torch.log_softmax(logits, dim=-1)
    targets = ids[0, 1:]
    return (-log_probs[torch.arange(targets.shape[0]), targets]).tolist()


# --- retrieval ----------------------------------------------------------------------------------


def recall_at_k(retrieved: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """Share of the relevant ids that appear in the top k retrieved ids."""
    relevant_set = _nonempty_set(relevant, "recall@k")
    _check_k(k)
    return len(relevant_set.intersection(retrieved[:k])) / len(relevant_set)


def first_relevant_rank(retrieved: Sequence[str], relevant: Iterable[str]) -> int | None:
    """1-based rank of the first relevant id (None when none is retrieved)."""
    relevant_set = set(relevant)
    return next((rank for rank, doc_id in enumerate(retrieved, start=1) if doc_id in relevant_set), None)


def reciprocal_rank(retrieved: Sequence[str], relevant: Iterable[str]) -> float:
    """1/rank of the first relevant id (0 when none is retrieved); its mean over queries is MRR."""
    rank = first_relevant_rank(retrieved, _nonempty_set(relevant, "MRR"))
    return 1.0 / rank if rank else 0.0


def mrr(runs: Sequence[tuple[Sequence[str], Iterable[str]]]) -> float:
    """Mean reciprocal rank over `(retrieved, relevant)` pairs, one per query."""
    if not runs:
        raise InvalidInputError("MRR needs at least one query")
    return sum(reciprocal_rank(r, rel) for r, rel in runs) / len(runs)


def hit_rate(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries whose first relevant hit is within the top k (from `first_relevant_rank`s):
    recall@k when each query counts one relevant source."""
    _check_k(k)
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def mean_reciprocal_rank(ranks: Sequence[int | None], cutoff: int | None = None) -> float:
    """MRR from first-relevant ranks (0 for a query with none, or none within `cutoff`)."""
    if not ranks:
        return 0.0
    return sum(1.0 / r for r in ranks if r is not None and (cutoff is None or r <= cutoff)) / len(ranks)


def ndcg_at_k(retrieved: Sequence[str], relevance: Mapping[str, float] | Iterable[str], k: int) -> float:
    """nDCG@k with linear gains: sum(rel_i / log2(i + 1)) over ranks i, divided by the ideal.

    `relevance` is either graded ({doc_id: gain}) or a set of relevant ids (gain 1 each).
    """
    _check_k(k)
    gains = dict(relevance) if isinstance(relevance, Mapping) else dict.fromkeys(relevance, 1.0)
    ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
    if not ideal:
        raise InvalidInputError("nDCG needs at least one document with a positive relevance")
    dcg = sum(gains.get(doc_id, 0.0) / math.log2(rank + 1) for rank, doc_id in enumerate(retrieved[:k], 1))
    idcg = sum(gain / math.log2(rank + 1) for rank, gain in enumerate(ideal, start=1))
    return dcg / idcg


# --- RAG answers --------------------------------------------------------------------------------


def extract_citations(text: str) -> list[str]:
    """Document ids cited as `[id]`, `[id1, id2]` or `Document N`, in order of first appearance."""
    return cited_labels(text)


def citation_precision(cited: Iterable[str], relevant: Iterable[str]) -> float:
    """Share of the distinct cited ids that are relevant. An answer that cites nothing scores 0."""
    cited_set = set(cited)
    if not cited_set:
        return 0.0
    return len(cited_set & set(relevant)) / len(cited_set)


_REFUSAL = re.compile(
    r"|".join(
        [
            r"\b(the )?(context|text|passage|document|documents|sources?) (does not|doesn't|do not|don't)"
            r" (say|mention|state|specify|contain|provide|include|answer)",
            r"\bnot (mentioned|stated|specified|provided|given|found|covered) in the"
            r" (context|text|passage|documents?|sources?)",
            r"\bi (do not|don't) know\b",
            r"\b(can ?not|can't|could not|couldn't) be (deduced|determined|answered|inferred|found)",
            r"\b(i am|i'm) (unable|not able) to (answer|determine|find)",
            r"\bi (can ?not|can't) (answer|determine|tell)",
            r"\b(no|not enough|insufficient) information\b",
            r"\bunanswerable\b",
        ]
    )
)


def is_refusal(text: str) -> bool:
    """True for answers like "The context does not say", "I don't know", "cannot be deduced"."""
    return bool(_REFUSAL.search(text.lower().replace("\u2019", "'")))


def refusal_rate(outputs: Sequence[str]) -> float:
    """Share of outputs that refuse; on unanswerable questions, higher is better."""
    if not outputs:
        raise InvalidInputError("refusal rate needs at least one output")
    return sum(is_refusal(o) for o in outputs) / len(outputs)


# --- per-example dispatch used by tasks and the runner -------------------------------------------

ExampleMetric = Callable[[str, str], dict[str, float]]

EXAMPLE_METRICS: dict[str, ExampleMetric] = {
    "rouge": rouge_scores,
    "bleu": lambda p, r: {"bleu": sentence_bleu(p, r)},
    "chrf": lambda p, r: {"chrf": sentence_chrf(p, r)},
    "exact_match": lambda p, r: {"exact_match": exact_match(p, r)},
    "token_f1": lambda p, r: {"token_f1": token_f1(p, r)},
    "refusal": lambda p, r: {"refusal": float(is_refusal(p))},
}
"""Metric names a task may list; `rouge` expands to rouge1/rouge2/rougeL/rougeLsum."""

CORPUS_METRICS: dict[str, Callable[[Sequence[str], Sequence[str]], float]] = {
    "bleu": corpus_bleu,
    "chrf": corpus_chrf,
}


def check_metric_names(names: Iterable[str]) -> None:
    unknown = sorted(set(names) - set(EXAMPLE_METRICS))
    if unknown:
        raise InvalidInputError(
            f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(sorted(EXAMPLE_METRICS))}"
        )


def score_example(names: Sequence[str], prediction: str, references: Sequence[str]) -> dict[str, float]:
    """Scores of one prediction; with several acceptable references each metric takes the best."""
    check_metric_names(names)
    if not references:
        raise InvalidInputError("scoring needs at least one reference")
    scores: dict[str, float] = {}
    for name in names:
        for reference in references:
            for key, value in EXAMPLE_METRICS[name](prediction, reference).items():
                scores[key] = max(value, scores.get(key, value))
    return scores


def corpus_scores(
    names: Sequence[str], predictions: Sequence[str], references: Sequence[str]
) -> dict[str, float]:
    """Corpus-level BLEU/chrF (`corpus_bleu`, `corpus_chrf`) for the metrics that have one."""
    return {f"corpus_{n}": CORPUS_METRICS[n](predictions, references) for n in names if n in CORPUS_METRICS}


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise InvalidInputError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise InvalidInputError("no predictions to score")


def _nonempty_set(ids: Iterable[str], metric: str) -> set[str]:
    result = set(ids)
    if not result:
        raise InvalidInputError(f"{metric} needs at least one relevant id")
    return result


def _check_k(k: int) -> None:
    if k < 1:
        raise InvalidInputError(f"k must be >= 1, got {k}")
