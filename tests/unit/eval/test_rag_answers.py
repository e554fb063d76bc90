"""Answer-level RAG evaluation: exact deterministic metrics on hand-built answers, the judge path
on a real tiny model (its verdicts are random, their parsing and aggregation are not), the CLI
end to end on a tiny store, and gates that pass and fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.eval.gates import GateSpec
from lmfoundry.eval.judges import GeneratorJudge
from lmfoundry.eval.rag_answer_judge import parse_support
from lmfoundry.eval.rag_answer_metrics import (
    citation_checks,
    context_precision,
    context_recall,
    mean_ci,
    refused,
    split_claims,
    summarize,
)
from lmfoundry.eval.rag_answers import (
    RagAnswerOptions,
    RagQuestion,
    check_answer_gates,
    deterministic_scores,
    judged_scores,
    read_questions,
)
from lmfoundry.rag.answer import NO_ANSWER, Answer
from lmfoundry.types import Chunk, Hit, SamplingParams


def _hit(source: str, chunk_id: str, text: str = "Paris is the capital of France.") -> Hit:
    return Hit(Chunk(chunk_id, source, text, 0, len(text)), 1.0)


HITS = [_hit("cats.txt", "c0"), _hit("paris.md", "p0"), _hit("banks.txt", "b0"), _hit("paris.md", "p1")]


def test_claims_are_sentences_without_citation_markers() -> None:
    answer = "According to Document 1, the sky is blue [1]. Yes. It rains a lot [0, 2].\nShort one"
    assert split_claims(answer) == ["the sky is blue.", "It rains a lot."]
    assert split_claims("One two three. Four five six. Seven eight nine.", max_claims=2) == [
        "One two three.",
        "Four five six.",
    ]
    assert split_claims("") == []
    wrapped = "Assert statements are not\nexecuted under -O. They\ncost nothing then.\n\nA list\n\nDone."
    assert split_claims(wrapped) == [
        "Assert statements are not executed under -O.",
        "They cost nothing then.",
    ]


def test_context_precision_is_average_precision_over_relevant_ranks() -> None:
    assert context_precision([False, True, False, True]) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert context_precision([True, False, True]) == pytest.approx((1 + 2 / 3) / 2)
    assert context_precision([True, True]) == 1.0
    assert context_precision([False, False]) == 0.0
    assert context_recall(["a", "b", "b"], ["a", "c"]) == 0.5
    assert context_recall(["a"], []) == 0.0


def test_citation_checks_count_written_labels_and_cited_sources() -> None:
    # labels 0, 7, 2 (a[1:2] is code, not a label): 0 and 2 name documents of a 3-document context
    checks = citation_checks("see [0] and [7] and Document 2, a[1:2]", ["s1", "s2"], 3, ["s1"])
    assert checks == {"citation_valid": pytest.approx(2 / 3), "citation_relevant": 0.5}
    assert citation_checks("no labels", [], 3, []) == {"citation_valid": None, "citation_relevant": None}
    assert citation_checks("no labels", [], 3, ["s1"])["citation_relevant"] == 0.0


def test_refusals_are_detected_and_empty_is_not_one() -> None:
    assert refused(NO_ANSWER, NO_ANSWER)
    assert refused("I don't know the answer.", NO_ANSWER)
    assert not refused("", NO_ANSWER)
    assert not refused("Paris is the capital.", NO_ANSWER)


def test_deterministic_scores_of_a_hand_built_answer() -> None:
    answer = Answer("Paris is the capital [1]. It is on the Seine [3] [9].", [], HITS)
    answer.citations = [{"document": 1, "source": "paris.md"}, {"document": 3, "source": "paris.md"}]
    q = RagQuestion("q", "What is the capital of France?", reference="Paris", sources=("paris.md",))
    scores = deterministic_scores(q, answer, refusal=False)
    assert scores == {
        "false_refusal": 0.0,
        "context_precision": pytest.approx((1 / 2 + 2 / 4) / 2),
        "context_recall": 1.0,
        "citation_valid": pytest.approx(2 / 3),  # [9] is not in the 4-document context
        "citation_relevant": 1.0,
        "reference_f1": pytest.approx(0.25),  # "paris is capital it is on seine": P 1/7, R 1
    }
    by_chunk = RagQuestion("q", "?", chunk_ids=("p1",))
    assert deterministic_scores(by_chunk, answer, False)["citation_relevant"] == 0.5
    assert deterministic_scores(RagQuestion("u", "?", answerable=False), answer, True) == {"refusal": 1.0}


def test_summary_means_cis_and_counts() -> None:
    def row(
        answerable: bool, scores: dict[str, Any], empty: bool = False, truncated: bool = False
    ) -> dict[str, Any]:
        return {"answerable": answerable, "scores": scores, "empty": empty, "truncated": truncated,
                "judge": {"n_unparseable": 1}}  # fmt: skip

    rows = [
        row(True, {"faithfulness": 1.0, "false_refusal": 0.0}),
        row(True, {"faithfulness": 0.5, "false_refusal": 0.0}, truncated=True),
        row(True, {"faithfulness": None, "false_refusal": 1.0}, empty=True),
        row(False, {"refusal": 1.0}),
    ]
    s = summarize(rows, n_boot=200)
    assert (s["n"], s["n_answerable"], s["n_unanswerable"]) == (4, 3, 1)
    assert (s["n_empty"], s["n_truncated"], s["empty_rate"], s["truncated_rate"]) == (1, 1, 0.25, 0.25)
    assert s["n_unparseable_verdicts"] == 4
    assert s["metrics"]["faithfulness"]["mean"] == 0.75 and s["metrics"]["faithfulness"]["n"] == 2
    assert (
        0.5 <= s["metrics"]["faithfulness"]["ci_low"] <= 0.75 <= s["metrics"]["faithfulness"]["ci_high"] <= 1
    )
    assert s["metrics"]["false_refusal"]["mean"] == pytest.approx(1 / 3)
    assert s["metrics"]["refusal"] == {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 1}
    assert s["metrics"]["answer_relevance"]["n"] == 0 and s["metrics"]["answer_relevance"]["mean"] is None
    assert mean_ci([]) == {"mean": None, "ci_low": None, "ci_high": None, "n": 0}


def test_support_verdicts_parse_from_json_or_a_leading_yes_no() -> None:
    assert parse_support('{"reasoning": "stated", "supported": "yes"}') is True
    assert parse_support('{"reasoning": "absent", "supported": "no"}') is False
    assert parse_support("No, the context is about cats.") is False
    assert parse_support("There is no mention of it.") is None  # a "no" in prose is not a verdict
    assert parse_support('{"supported": "maybe"}') is None


def test_judge_path_with_a_real_tiny_model(tiny_long_dir: Path) -> None:
    import lmfoundry

    model = lmfoundry.load(str(tiny_long_dir), backend="transformers")
    judge = GeneratorJudge(model, SamplingParams(temperature=1.0, max_new_tokens=12))
    answer = Answer("Paris is the capital of France [1] [2]. The river is the Seine [1].", [], HITS)
    answer.citations = [{"document": 1, "source": "paris.md"}, {"document": 2, "source": "banks.txt"}]
    q = RagQuestion("q", "What is the capital of France?", sources=("paris.md",))
    scores, verdicts = judged_scores(judge, q, answer, RagAnswerOptions(max_claims=1))
    assert verdicts.n_unparseable == 0  # the grammar admits only {"reasoning": ..., "supported": ...}
    assert len(verdicts.raw) == 1 * 2 + 1  # 1 claim x 2 cited documents + the relevance score
    verdict = [json.loads(raw)["supported"] == "yes" for raw in verdicts.raw[:2]]
    assert verdicts.claims == [{"claim": "Paris is the capital of France.", "supported": any(verdict),
                                "supported_by": [d for d, yes in zip((1, 2), verdict, strict=True) if yes]}]  # fmt: skip
    assert scores["faithfulness"] == float(any(verdict))
    assert scores["citation_support"] == sum(verdict) / 2
    assert scores["answer_relevance"] == (json.loads(verdicts.raw[2])["score"] - 1) / 4


def test_a_claim_without_citations_is_unsupported_without_a_judge_call() -> None:
    answer = Answer("Paris is the capital of France.", [], HITS)
    scores, verdicts = judged_scores(_NoCalls(), RagQuestion("q", "?"), answer, RagAnswerOptions(n_boot=10))
    assert scores["faithfulness"] == 0.0 and scores["citation_support"] is None
    assert verdicts.claims == [
        {"claim": "Paris is the capital of France.", "supported": False, "supported_by": []}
    ]


class _NoCalls:
    """A judge that refuses support questions (none may be asked) and scores relevance 3."""

    def complete(self, prompt: str, *, seed: int) -> str:
        assert "Statement:" not in prompt
        return "Score: 3"


def test_question_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    with pytest.raises(LmfError, match="question file not found"):
        read_questions(path)
    cases = [
        ({"reference": "x"}, "each line needs a non-empty 'question'"),
        ({"question": "Why?", "answerable": "no"}, "'answerable' must be true or false"),
        ({"question": "Why?", "sources": ["a", 3]}, "'sources' must be a non-empty string"),
        ({"question": "Why?", "reference": 4}, "'reference' must be a string"),
    ]
    for record, message in cases:
        path.write_text(json.dumps({"question": "Fine?"}) + "\n" + json.dumps(record) + "\n")
        with pytest.raises(InvalidInputError, match=f"q.jsonl:2: {message}"):
            read_questions(path)
    path.write_text("\n")
    with pytest.raises(InvalidInputError, match="no questions"):
        read_questions(path)
    path.write_text(
        json.dumps({"question": " Why? ", "source": "a", "chunk_ids": ["c1"], "answer": "r"}) + "\n"
    )
    assert read_questions(path) == [RagQuestion("1", "Why?", "r", ("a",), ("c1",), True)]


def test_gates_refuse_comparison_gates_and_unknown_metrics() -> None:
    result = {"summary": summarize([{"answerable": True, "scores": {"faithfulness": 0.5}, "empty": False,
                                     "truncated": False, "judge": {"n_unparseable": 0}}], n_boot=10)}  # fmt: skip
    assert check_answer_gates(GateSpec.model_validate({"absolute": [{"metric": "faithfulness", "min": 0.4}]}),
                              result).passed  # fmt: skip
    failing = check_answer_gates(GateSpec.model_validate({"absolute": [{"metric": "empty_rate", "max": 0.0},
                                 {"metric": "faithfulness", "min": 0.9}]}), result)  # fmt: skip
    assert not failing.passed and [c.passed for c in failing.checks] == [True, False]
    with pytest.raises(LmfError, match="only `absolute` gates"):
        check_answer_gates(
            GateSpec.model_validate({"relative": [{"metric": "faithfulness", "max_drop": 0}]}), result
        )
    with pytest.raises(LmfError, match="gate metric 'refusal' is not in the comparison"):
        check_answer_gates(GateSpec.model_validate({"absolute": [{"metric": "refusal", "min": 0.5}]}), result)


def test_cli_end_to_end_on_a_tiny_store_with_a_failing_gate(
    tmp_path: Path, tiny_long_dir: Path, embedder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmfoundry.rag import index_paths

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "paris.md").write_text("Paris is the capital of France, on the river Seine.\n", encoding="utf-8")
    (docs / "cats.txt").write_text(
        "Cats are small felines. A cat sleeps most of the day.\n", encoding="utf-8"
    )
    index_paths([docs], "docs", progress=False)
    questions = tmp_path / "q.jsonl"
    rows = [
        {
            "question": "What is the capital of France?",
            "source": str(docs / "paris.md"),
            "reference": "Paris",
        },
        {"question": "Who won the 1998 World Cup?", "answerable": False},
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gates = tmp_path / "gates.yaml"
    gates.write_text(
        "absolute:\n  - metric: context_recall\n    min: 0.5\n  - metric: refusal\n    min: 1.1\n"
    )
    out, md = tmp_path / "out", tmp_path / "gate.md"
    argv = ["eval", "rag-answers", "docs", "--questions", str(questions), "--model", str(tiny_long_dir),
            "--max-new-tokens", "6", "--no-judge", "--gates", str(gates), "--markdown", str(md),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 1  # refusal can never reach 1.1
    shown = capsys.readouterr().out
    assert "questions 2 (1 answerable, 1 unanswerable)" in shown and "FAILED" in shown
    saved = json.loads((out / "rag_answers.json").read_text())
    assert saved["judge"] is None and saved["options"]["max_new_tokens"] == 6
    summary = saved["summary"]
    assert summary["metrics"]["faithfulness"]["n"] == 0  # needs a judge
    assert (summary["n"], summary["n_answerable"], summary["n_unanswerable"]) == (2, 1, 1)
    assert summary["metrics"]["context_recall"] == {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 1}
    assert summary["n_empty"] == sum(not r["answer"].strip() for r in saved["rows"])
    assert [r["answerable"] for r in saved["rows"]] == [True, False]
    assert len((out / "rows.jsonl").read_text().splitlines()) == 2  # written as the run went
    assert "context_recall | challenger >= 0.5 | 1.0000 | ✅ pass" in md.read_text()
    assert "refusal | challenger >= 1.1" in md.read_text() and "❌ fail" in md.read_text()


def test_cli_rejects_a_bad_gates_file_before_loading_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "Why?"}) + "\n")
    gates = tmp_path / "gates.yaml"
    gates.write_text("absolute:\n  - metric: faithfulness\n")
    argv = ["eval", "rag-answers", "nostore", "--questions", str(questions), "--model", "no-such-model",
            "--gates", str(gates)]  # fmt: skip
    assert main(argv) == 1
    assert "needs 'min' or 'max'" in capsys.readouterr().err
