"""Metrics against their reference libraries and hand-computed cases."""

from __future__ import annotations

import math

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.eval import metrics

PREDICTIONS = [
    "The cats are running in the garden.",
    "#Person2# will call the technician.",
    "They meet on Friday.\nThe meeting is at ten.",
]
REFERENCES = [
    "A cat runs through the garden.",
    "#Person2# will call the technician to fix the printer.",
    "They move the meeting to Friday.\nIt starts at ten.",
]


def test_rouge_matches_rouge_score_with_stemming() -> None:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    expected = [scorer.score(r, p) for p, r in zip(PREDICTIONS, REFERENCES, strict=True)]
    for prediction, reference, ref_scores in zip(PREDICTIONS, REFERENCES, expected, strict=True):
        ours = metrics.rouge_scores(prediction, reference)
        assert ours == {k: pytest.approx(v.fmeasure) for k, v in ref_scores.items()}
    corpus = metrics.rouge(PREDICTIONS, REFERENCES)
    for key in metrics.ROUGE_KEYS:
        assert corpus[key] == pytest.approx(sum(s[key].fmeasure for s in expected) / len(expected))


def test_rouge_uses_stemming() -> None:
    from rouge_score import rouge_scorer

    unstemmed = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False).score("the cat runs", "cats running")
    ours = metrics.rouge_scores("cats running", "the cat runs")["rouge1"]
    assert unstemmed["rouge1"].fmeasure == 0.0
    assert ours == pytest.approx(0.8)  # both tokens match after stemming: P=1, R=2/3


def test_bleu_and_chrf_match_sacrebleu() -> None:
    import sacrebleu

    refs = [REFERENCES]
    assert metrics.corpus_bleu(PREDICTIONS, REFERENCES) == pytest.approx(
        sacrebleu.corpus_bleu(PREDICTIONS, refs).score / 100
    )
    assert metrics.corpus_chrf(PREDICTIONS, REFERENCES) == pytest.approx(
        sacrebleu.corpus_chrf(PREDICTIONS, refs).score / 100
    )
    for p, r in zip(PREDICTIONS, REFERENCES, strict=True):
        assert metrics.sentence_bleu(p, r) == pytest.approx(sacrebleu.sentence_bleu(p, [r]).score / 100)
        assert metrics.sentence_chrf(p, r) == pytest.approx(sacrebleu.sentence_chrf(p, [r]).score / 100)
    assert metrics.corpus_bleu(["the same five words here"], ["the same five words here"]) == pytest.approx(
        1.0
    )


def test_squad_normalization_exact_match_and_f1() -> None:
    assert metrics.normalize_answer("  The Cat,  sat on A mat! ") == "cat sat on mat"
    assert metrics.exact_match("The Eiffel Tower.", "eiffel tower") == 1.0
    assert metrics.exact_match("Eiffel", "eiffel tower") == 0.0
    # pred tokens {cat, sat, on, mat}, ref {cat, on, mat}: P = 3/4, R = 1
    assert metrics.token_f1("the cat sat on the mat", "a cat on a mat") == pytest.approx(2 * 0.75 / 1.75)
    assert metrics.token_f1("dog", "cat") == 0.0
    assert metrics.token_f1("the", "a") == 1.0  # both normalize to empty, as in the SQuAD script


def test_perplexity_matches_the_models_own_loss() -> None:
    import torch

    from tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    model = build_model("llama").eval()
    text = "The quick brown fox jumps over the lazy dog."
    nlls = metrics.token_nlls(model, tokenizer, text)
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert len(nlls) == ids.shape[1] - 1
    assert metrics.perplexity(nlls) == pytest.approx(math.exp(loss), rel=1e-4)
    assert metrics.perplexity([math.log(4.0)] * 3) == pytest.approx(4.0)


def test_retrieval_metrics_hand_computed() -> None:
    retrieved = ["a", "b", "c", "d"]
    assert metrics.recall_at_k(retrieved, {"b", "d", "e"}, 2) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(retrieved, {"b", "d", "e"}, 4) == pytest.approx(2 / 3)
    assert metrics.reciprocal_rank(["x", "a"], ["a"]) == 0.5
    assert metrics.mrr([(["x", "a"], ["a"]), (["a"], ["a"]), (["x", "y"], ["a"])]) == pytest.approx(0.5)


def test_ndcg_graded_hand_computed() -> None:
    retrieved = ["d1", "d2", "d3", "d4"]
    relevance = {"d1": 3.0, "d3": 2.0, "d5": 1.0}
    dcg = 3 / math.log2(2) + 2 / math.log2(4)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert metrics.ndcg_at_k(retrieved, relevance, 4) == pytest.approx(dcg / idcg)
    assert metrics.ndcg_at_k(["d1", "d3", "d5"], relevance, 3) == pytest.approx(1.0)
    # binary relevance, one relevant doc at rank 2
    assert metrics.ndcg_at_k(["x", "y"], {"y"}, 2) == pytest.approx(1 / math.log2(3))


@pytest.mark.parametrize(
    "call",
    [
        lambda: metrics.recall_at_k(["a"], {"a"}, 0),
        lambda: metrics.recall_at_k(["a"], set(), 1),
        lambda: metrics.ndcg_at_k(["a"], {"a": 0.0}, 1),
        lambda: metrics.mrr([]),
        lambda: metrics.perplexity([]),
        lambda: metrics.refusal_rate([]),
        lambda: metrics.corpus_bleu(["a"], ["a", "b"]),
        lambda: metrics.score_example(["rouge", "meteor"], "a", ["a"]),
    ],
)
def test_bad_inputs_raise_lmf_error(call) -> None:
    with pytest.raises(LmfError):
        call()


def test_citations() -> None:
    assert metrics.extract_citations("Paris [d1] is big [d2, d3]. Again [d1].") == ["d1", "d2", "d3"]
    assert metrics.citation_precision(["d1", "d2", "d2", "d9"], {"d1", "d2", "d3"}) == pytest.approx(2 / 3)
    assert metrics.citation_precision([], {"d1"}) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "The context does not say who won.",
        "I don't know.",
        "I do not know the answer",
        "This cannot be deduced from the passage.",
        "The answer is not mentioned in the context.",
        "The documents don\u2019t mention it.",
        "There is not enough information to answer.",
        "I'm unable to answer that from the text.",
    ],
)
def test_refusals_detected(text: str) -> None:
    assert metrics.is_refusal(text)


@pytest.mark.parametrize(
    "text", ["Paris is the capital of France.", "The context says the meeting is on Friday.", "I know it: 42"]
)
def test_answers_are_not_refusals(text: str) -> None:
    assert not metrics.is_refusal(text)


def test_refusal_rate() -> None:
    assert metrics.refusal_rate(["I don't know", "Paris", "cannot be determined", "42"]) == 0.5


def test_score_example_takes_best_reference_and_expands_rouge() -> None:
    scores = metrics.score_example(
        ["exact_match", "token_f1", "rouge"], "Shakespeare", ["William Shakespeare", "Shakespeare"]
    )
    assert scores["exact_match"] == 1.0
    assert scores["token_f1"] == 1.0
    assert set(scores) == {"exact_match", "token_f1", "rouge1", "rouge2", "rougeL", "rougeLsum"}
