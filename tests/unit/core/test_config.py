"""Config building: overrides, type checks, unknown keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lmfoundry.config import apply_overrides, build, load_yaml, write_resolved
from lmfoundry.errors import InvalidInputError


@dataclass
class Inner:
    lr: float = 0.1
    steps: int = 3


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


def test_overrides_and_scientific_notation() -> None:
    data = apply_overrides({"inner": {"steps": 1}}, ["inner.lr=1e-3", "name=run"])
    config = build(Outer, data)
    assert config.inner.lr == pytest.approx(0.001) and config.inner.steps == 1 and config.name == "run"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"inner": {"lr": "fast"}}, "expected a number"),
        ({"inner": {"steps": "3"}}, "expected int"),
        ({"nme": 1}, "nme"),
    ],
)
def test_bad_values_and_unknown_keys(data: dict, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        build(Outer, data)


def test_bad_override_and_yaml(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="key=value"):
        apply_overrides({}, ["novalue"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(InvalidInputError, match="invalid YAML"):
        load_yaml(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(InvalidInputError, match="mapping"):
        load_yaml(bad)


def test_resolved_config_is_written(tmp_path: Path) -> None:
    path = write_resolved(Outer(), tmp_path)
    assert load_yaml(path) == {"name": "x", "inner": {"lr": 0.1, "steps": 3}}
