"""Paired bootstrap and champion-vs-challenger comparison."""

from __future__ import annotations

import random
import statistics

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.eval.closed_book_qa import QUESTIONS
from lmfoundry.eval.compare import compare_results, load_comparison, paired_bootstrap, save_comparison
from lmfoundry.eval.evaluate import run_task
from lmfoundry.eval.rag_answer_metrics import mean_ci
from lmfoundry.eval.tasks import load_task
from lmfoundry.stats import bootstrap_difference, bootstrap_mean


def _scores(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(0.2, 0.4) for _ in range(n)]


def test_clearly_better_challenger_has_positive_ci() -> None:
    champion = _scores(50, 1)
    rng = random.Random(2)
    challenger = [c + 0.1 + rng.uniform(-0.05, 0.05) for c in champion]
    result = paired_bootstrap(champion, challenger)
    assert result["ci_low"] > 0
    assert result["ci_low"] <= result["diff"] <= result["ci_high"]
    assert result["champion"] == pytest.approx(statistics.fmean(champion))
    assert result["challenger"] == pytest.approx(statistics.fmean(challenger))
    assert (result["wins"], result["ties"], result["losses"]) == (50, 0, 0)


def test_identical_lists_give_zero_diff_and_a_ci_containing_zero() -> None:
    scores = _scores(40, 3)
    result = paired_bootstrap(scores, list(scores))
    assert result["diff"] == 0.0
    assert result["ci_low"] <= 0.0 <= result["ci_high"]
    assert result["ties"] == 40


def test_ci_width_matches_the_normal_approximation() -> None:
    champion, challenger = _scores(200, 4), _scores(200, 5)
    diffs = [b - a for a, b in zip(champion, challenger, strict=True)]
    half_width = 1.96 * statistics.stdev(diffs) / len(diffs) ** 0.5
    result = paired_bootstrap(champion, challenger, n_boot=4000)
    assert (result["ci_high"] - result["ci_low"]) / 2 == pytest.approx(half_width, rel=0.15)
    assert result["ci_low"] < 0 < result["ci_high"]  # two draws from one distribution


def test_deterministic_by_seed() -> None:
    a, b = _scores(30, 6), _scores(30, 7)
    assert paired_bootstrap(a, b, seed=11) == paired_bootstrap(a, b, seed=11)
    assert paired_bootstrap(a, b, seed=11)["ci_low"] != paired_bootstrap(a, b, seed=12)["ci_low"]


def test_one_bootstrap_serves_eval_and_rag() -> None:
    """`paired_bootstrap` (eval) and `bootstrap_difference` (core, used by rag) are one resampling:
    the same seed gives the same CI, and `mean_ci` is `bootstrap_mean`."""
    a, b = _scores(25, 8), _scores(25, 9)
    paired = paired_bootstrap(a, b, n_boot=500, seed=4, confidence=0.9)
    core = bootstrap_difference(a, b, n_boot=500, seed=4, confidence=0.9)
    assert {k: paired[k] for k in ("diff", "ci_low", "ci_high")} == core
    assert mean_ci(b, n_boot=500, seed=4) == {**bootstrap_mean(b, n_boot=500, seed=4), "n": 25}


@pytest.mark.parametrize(
    "kwargs", [{"champion": [1.0], "challenger": [1.0, 2.0]}, {"champion": [], "challenger": []},
               {"champion": [1.0], "challenger": [1.0], "confidence": 1.0}]
)  # fmt: skip
def test_bootstrap_rejects_bad_input(kwargs) -> None:
    with pytest.raises(LmfError):
        paired_bootstrap(**kwargs)


ANSWERS = {question: answer for _, question, answer, _ in QUESTIONS}


def _oracle(prompt: str) -> str:
    return next(answer for question, answer in ANSWERS.items() if question in prompt)


def test_compare_results_on_identical_examples(scripted, tmp_path) -> None:
    task = load_task("closed-book-qa")
    champion = run_task(scripted(lambda p: "no idea", name="base", ttft_s=0.1), task, progress=False)
    challenger = run_task(scripted(_oracle, name="tuned", ttft_s=0.02), task, progress=False)
    comparison = compare_results(champion, challenger)
    em = comparison["metrics"]["exact_match"]
    assert (em["champion"], em["challenger"], em["diff"]) == (0.0, 1.0, 1.0)
    assert em["ci_low"] > 0 and em["wins"] == len(task.examples)
    assert set(comparison["metrics"]) == {"exact_match", "token_f1"}
    ttft = comparison["latency"]["ttft_s_p50"]
    assert ttft["diff"] == pytest.approx(0.02 - 0.1)
    assert comparison["cost_per_1m_tokens"]["challenger"] is not None
    path = save_comparison(comparison, tmp_path / "comparison.json")
    assert load_comparison(path) == comparison


def test_mismatched_example_ids_raise(scripted) -> None:
    task = load_task("closed-book-qa")
    champion = run_task(scripted(_oracle), task, limit=5, progress=False)
    challenger = run_task(scripted(_oracle), task, limit=6, progress=False)
    with pytest.raises(LmfError, match="different examples"):
        compare_results(champion, challenger)


def test_load_comparison_errors(tmp_path) -> None:
    with pytest.raises(LmfError, match="not found"):
        load_comparison(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"task": "x"}')
    with pytest.raises(LmfError, match="not a comparison"):
        load_comparison(bad)
