"""Judges held to a JSON answer format: a random-weight local judge and an endpoint judge behind
our server both give verdicts that always parse (n_unparseable == 0 by construction)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lmfoundry
from lmfoundry.eval.judge import JudgeItem, run_judge
from lmfoundry.eval.judge_format import VERDICT_FORMAT, score_format
from lmfoundry.eval.judge_prompts import Rubric, parse_score, parse_verdict
from lmfoundry.eval.judges import GeneratorJudge, OpenAIJudge
from lmfoundry.types import SamplingParams

ITEMS = [
    JudgeItem("1", "Say hi", "hi", "hello"),
    JudgeItem("2", "Name a colour", "blue", "the sky"),
    JudgeItem("3", "Count to three", "1 2 3", "one"),
]


def test_json_replies_parse_and_out_of_range_is_rejected() -> None:
    assert parse_score('{"reasoning": "fine", "score": 4}') == 4
    assert parse_score('{"reasoning": "x", "score": 9}') is None
    assert parse_score('{"reasoning": "x", "score": true}') is None
    assert parse_verdict('{"reasoning": "x", "verdict": "B"}') == "b"
    assert parse_verdict('{"reasoning": "x", "verdict": "tie"}') == "tie"


@pytest.mark.parametrize("max_new_tokens", [8, 24, 64])
def test_local_judge_always_parses_even_with_random_weights(tiny_long_dir: Path, max_new_tokens: int) -> None:
    model = lmfoundry.load(str(tiny_long_dir), backend="transformers")
    judge = GeneratorJudge(model, SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens))
    rubric = run_judge(judge, ITEMS, rubric=Rubric())
    pairwise = run_judge(judge, ITEMS, pairwise=True)
    assert rubric["n_unparseable"] == 0 and pairwise["n_unparseable"] == 0
    for row in rubric["runs"][0]["judgments"]:
        assert json.loads(row["raw"])["score"] in range(1, 6)


def test_answer_format_grammar_and_schema_agree() -> None:
    import jsonschema

    fmt = score_format(0, 10)
    jsonschema.validate({"reasoning": "ok", "score": 10}, fmt.json_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"reasoning": "ok", "score": 11}, fmt.json_schema())
    assert '"A" | "B"' not in VERDICT_FORMAT.constraint(16).spec  # verdicts are JSON strings
    assert '"\\"A\\""' in VERDICT_FORMAT.constraint(16).spec


def test_endpoint_judge_sends_the_schema_and_parses(
    tiny_long_dir: Path, served_factory_for_judge: str
) -> None:
    judge = OpenAIJudge(
        served_factory_for_judge, model="tiny", max_tokens=500, temperature=1.0
    )  # 300 reasoning chars, nearly a token each
    result = run_judge(judge, ITEMS, rubric=Rubric())
    assert result["n_unparseable"] == 0


@pytest.fixture()
def served_factory_for_judge(tiny_long_dir: Path):  # type: ignore[no-untyped-def]
    from lmfoundry.serve.app import create_app
    from lmfoundry.serve.http_server import running_server
    from lmfoundry.serve.service import ServedModel, ServeOptions

    options = ServeOptions(embedder=None, max_tokens=600)
    served = ServedModel.create(
        lmfoundry.load(str(tiny_long_dir), backend="transformers"), name="tiny", options=options
    )
    try:
        with running_server(create_app(served, options)) as url:
            yield f"{url}/v1"
    finally:
        served.close()
