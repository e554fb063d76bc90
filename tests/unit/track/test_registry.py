"""Registry semantics: versions point at base + adapter; promote/rollback walk the alias history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.track import registry
from lmfoundry.track.registry import Pointer, RegistryError


def _three_versions(tmp_path: Path, make_adapter: Any) -> list[int]:
    return [
        registry.register("summ", Pointer("base-model", str(make_adapter(tmp_path / f"a{i}"))))
        for i in range(3)
    ]


def test_register_stores_the_pointer(tmp_path: Path, make_adapter: Any) -> None:
    adapter = make_adapter(tmp_path / "adapter")
    assert registry.register("summ", Pointer("smollm2-135m-instruct", str(adapter))) == 1
    assert registry.register("summ", Pointer("smollm2-135m-instruct")) == 2
    info = registry.show("summ")
    assert [v["version"] for v in info["versions"]] == [1, 2]
    assert info["versions"][0]["adapter"] == str(adapter.resolve())
    assert info["versions"][0]["source"] == str(adapter.resolve())
    assert (
        info["versions"][1]["adapter"] is None
        and info["versions"][1]["source"] == "store:smollm2-135m-instruct"
    )


def test_register_rejects_a_non_adapter_folder(tmp_path: Path, make_adapter: Any) -> None:
    with pytest.raises(InvalidInputError, match="adapter_config.json"):
        registry.register("summ", Pointer("base", str(tmp_path)))
    with pytest.raises(InvalidInputError, match="invalid registered model name"):
        registry.register("bad/name", Pointer("base"))


def test_promote_and_rollback_follow_the_history(tmp_path: Path, make_adapter: Any) -> None:
    v1, v2, v3 = _three_versions(tmp_path, make_adapter)
    assert registry.promote("summ", v1)["previous"] is None
    assert registry.promote("summ", v3)["previous"] == v1
    registry.promote("summ", v2)
    assert registry.history("summ") == [v1, v3, v2]
    assert registry.resolve("summ")[0] == v2
    assert registry.rollback("summ") == {"name": "summ", "alias": "champion", "previous": v2, "version": v3}
    assert registry.resolve("summ") == (v3, Pointer("base-model", str((tmp_path / "a2").resolve())))
    assert registry.rollback("summ")["version"] == v1
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("summ")
    assert registry.resolve("summ")[0] == v1


def test_promote_the_same_version_twice_keeps_one_history_entry(tmp_path: Path, make_adapter: Any) -> None:
    v1, v2, _ = _three_versions(tmp_path, make_adapter)
    registry.promote("summ", v1)
    registry.promote("summ", v2)
    registry.promote("summ", v2)
    assert registry.history("summ") == [v1, v2]
    assert registry.rollback("summ")["version"] == v1


def test_aliases_are_independent(tmp_path: Path, make_adapter: Any) -> None:
    v1, v2, _ = _three_versions(tmp_path, make_adapter)
    registry.promote("summ", v1)
    registry.promote("summ", v2, alias="staging")
    assert registry.show("summ")["aliases"] == {"champion": v1, "staging": v2}
    assert registry.list_models() == [
        {"name": "summ", "versions": 3, "latest": 3, "aliases": {"champion": v1, "staging": v2}}
    ]


def test_errors_name_the_problem(tmp_path: Path, make_adapter: Any) -> None:
    with pytest.raises(RegistryError, match="no registered model 'nope'"):
        registry.show("nope")
    _three_versions(tmp_path, make_adapter)
    with pytest.raises(RegistryError, match="no version 9"):
        registry.promote("summ", 9)
    with pytest.raises(RegistryError, match="no 'champion' alias"):
        registry.resolve("summ")
    with pytest.raises(RegistryError, match="no 'champion' alias"):
        registry.rollback("summ")
    with pytest.raises(InvalidInputError, match="invalid alias"):
        registry.promote("summ", 1, alias="v2")
