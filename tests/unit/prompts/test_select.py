"""Choosing demonstrations: fixed, seeded random, and by embedding similarity (a real embedder)."""

from __future__ import annotations

from typing import Any

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.prompts.select import DemoSelector
from lmfoundry.prompts.template import Demonstration, parse_prompt

POOL = [
    Demonstration("The printer on floor two is jammed again.", "printer"),
    Demonstration("Can we book a table for four at seven tonight?", "restaurant"),
    Demonstration("My flight to Rome was cancelled this morning.", "flight"),
    Demonstration("The copier keeps jamming when I print double-sided.", "printer"),
    Demonstration("I would like a table by the window on Friday.", "restaurant"),
]


def _selector(selection: str, shots: int = 2, **kw: Any) -> DemoSelector:
    return DemoSelector(parse_prompt({"name": "s", "shots": shots, "selection": selection, **kw}), POOL)


def test_fixed_takes_the_first_k_and_never_the_input_itself() -> None:
    assert [d.output for d in _selector("fixed").select("anything", "1")] == ["printer", "restaurant"]
    assert _selector("fixed").select(POOL[0].input, "1") == [POOL[1], POOL[2]]
    assert _selector("fixed", shots=0).select("anything", "1") == []


def test_random_is_seeded_per_input() -> None:
    a = _selector("random").select("q", "example-1")
    assert a == _selector("random").select("q", "example-1")
    draws = {tuple(d.output for d in _selector("random").select("q", f"example-{i}")) for i in range(20)}
    assert len(draws) > 3
    per_example = [_selector("random").select("q", f"example-{i}") for i in range(20)]
    assert [_selector("random", seed=1).select("q", f"example-{i}") for i in range(20)] != per_example


def test_similar_picks_the_nearest_inputs_nearest_last(embedder: Any) -> None:
    chosen = DemoSelector(
        parse_prompt({"name": "s", "shots": 2, "selection": "similar"}), POOL, embedder
    ).select("The office printer is jammed, paper stuck inside.", "q1")
    assert [d.output for d in chosen] == ["printer", "printer"]
    assert chosen[-1] == POOL[0]  # the closest one sits right before the input
    restaurant = DemoSelector(parse_prompt({"name": "s", "shots": 1, "selection": "similar"}), POOL, embedder)
    assert restaurant.select("Reserve a table for two tomorrow evening.", "q2")[0].output == "restaurant"


def test_demonstrations_without_a_pool_are_an_error_naming_the_fix() -> None:
    with pytest.raises(InvalidInputError, match="add `demonstrations:`"):
        DemoSelector(parse_prompt({"name": "s", "shots": 2}))
    template = parse_prompt({"name": "s", "shots": 1, "demonstrations": [{"input": "a", "output": "b"}]})
    assert DemoSelector(template).select("c", "1") == [Demonstration("a", "b")]
