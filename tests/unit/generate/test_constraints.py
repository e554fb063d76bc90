"""Grammar-constrained decoding on a tiny random model: whatever the weights, every output matches
its JSON schema, regex, choice list or grammar; malformed constraints are errors naming the problem."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import lmfoundry
from lmfoundry.errors import InvalidInputError
from lmfoundry.generate.constraints import closed_objects, response_constraint
from lmfoundry.generate.engine import LoadedModel
from lmfoundry.types import Constraint, Message

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user"]},
        "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
    },
    "required": ["name", "age", "role", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def model(tiny_llama_dir: Path) -> LoadedModel:
    return lmfoundry.load(str(tiny_llama_dir), backend="transformers")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_json_schema_output_validates_even_from_random_weights(model: LoadedModel, seed: int) -> None:
    import jsonschema

    result = model.generate(
        [Message("user", "Describe a person")],
        temperature=1.0,
        seed=seed,
        max_new_tokens=120,
        constraint=Constraint.json(PERSON),
    )
    assert result.finish_reason == "stop", result.text
    jsonschema.validate(json.loads(result.text), PERSON)


def test_greedy_constrained_generation_is_deterministic(model: LoadedModel) -> None:
    runs = [
        model.generate("x", temperature=0, max_new_tokens=120, constraint=Constraint.json(PERSON)).text
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_regex_choice_and_gbnf_grammar(model: LoadedModel) -> None:
    date = model.generate(
        "d", temperature=1.0, seed=4, max_new_tokens=20, constraint=Constraint.regex(r"\d{4}-\d{2}")
    )
    assert re.fullmatch(r"[0-9]{4}-[0-9]{2}", date.text), date.text  # ASCII digits, not any Unicode digit
    pick = model.generate(
        "p", temperature=1.0, seed=5, max_new_tokens=10, constraint=Constraint.choice(["red", "blue"])
    )
    assert pick.text in ("red", "blue")
    gbnf = 'root ::= "yes" | "no" | "maybe " [0-9]'
    answer = model.generate(
        "g", temperature=1.0, seed=6, max_new_tokens=10, constraint=Constraint.grammar(gbnf)
    )
    assert re.fullmatch(r"yes|no|maybe [0-9]", answer.text), answer.text


def test_any_json_object(model: LoadedModel) -> None:
    result = model.generate("o", temperature=0, max_new_tokens=200, constraint=Constraint.json())
    if result.finish_reason == "stop":
        assert isinstance(json.loads(result.text), dict)
    else:  # an unbounded object may run out of tokens: it must then still be a JSON prefix
        assert result.text.startswith("{")


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        (Constraint("json", '{"type": "object", "properties": {"a": {"type": "nonsense"}}}'), "nonsense"),
        (Constraint("json", "[1, 2]"), "JSON object"),
        (Constraint("json", "{not json"), "invalid json"),
        (Constraint.regex("(unclosed"), "invalid regex"),
        (Constraint.grammar("start: undefined_rule"), "invalid grammar"),
    ],
)
def test_bad_constraints_name_the_problem(model: LoadedModel, constraint: Constraint, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        model.generate("x", max_new_tokens=5, constraint=constraint)


def test_choice_needs_options() -> None:
    with pytest.raises(InvalidInputError, match="non-empty list"):
        Constraint.choice([])


def test_response_format_mapping() -> None:
    assert response_constraint(None) is None
    assert response_constraint({"type": "text"}) is None
    assert response_constraint({"type": "json_object"}) == Constraint.json()
    strict = response_constraint(
        {
            "type": "json_schema",
            "json_schema": {
                "name": "p",
                "strict": True,
                "schema": {"type": "object", "properties": {"a": {"type": "object"}}},
            },
        }
    )
    assert strict is not None
    schema = json.loads(strict.spec)
    assert (
        schema["additionalProperties"] is False and schema["properties"]["a"]["additionalProperties"] is False
    )
    with pytest.raises(InvalidInputError, match="json_object or json_schema"):
        response_constraint({"type": "xml"})
    with pytest.raises(InvalidInputError, match="json_schema must be"):
        response_constraint({"type": "json_schema", "json_schema": "nope"})


def test_strict_mode_keeps_explicit_additional_properties_and_property_names() -> None:
    schema = {
        "type": "object",
        "properties": {"properties": {"type": "string"}},
        "additionalProperties": True,
    }
    closed = closed_objects(schema)
    assert closed["additionalProperties"] is True
    assert closed["properties"] == {"properties": {"type": "string"}}


def test_a_repeated_segment_ends_the_output(model: LoadedModel) -> None:
    grammar = 'start: seg ("\\n" seg)*\nseg: "<a>" ("1" | "2") "</e>"'
    state = model.runtime.constrain(Constraint("grammar", grammar, end_on_repeat="</e>"))  # type: ignore[attr-defined]
    for piece in ["<a>1</e>", "\n<a>2</e>"]:
        for token in _ids(model, piece):
            state.accept(token)
        assert state.allowed().sum() > 1  # new segments: the output may go on
    for token in _ids(model, "\n<a>1</e>"):
        state.accept(token)
    allowed = state.allowed()
    assert set(allowed.nonzero()[0]) == set(model.runtime.eos_ids)  # "<a>1</e>" again: only EOS


def _ids(model: LoadedModel, text: str) -> list[int]:
    return list(model.tokenizer(text, add_special_tokens=False)["input_ids"])
