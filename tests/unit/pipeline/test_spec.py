"""Pipeline files: checks at load time, references, interpolation, cache keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.pipeline.spec import interpolate, load_pipeline
from lmfoundry.pipeline.state import stage_key

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "pipelines"


def test_shipped_pipelines_load() -> None:
    for path in sorted(CONFIGS.glob("*.yaml")):
        spec = load_pipeline(path)
        assert spec.stages and path.read_text().startswith("# lmf pipeline run")


def test_quickstart_stages_and_inputs(lmf_home: Path) -> None:
    spec = load_pipeline(CONFIGS / "quickstart.yaml")
    assert spec.workdir == lmf_home / "pipelines" / "quickstart"
    assert spec.names() == ["data", "finetune", "evaluate", "gate", "register", "deploy", "rag-index",
                            "rag-ask", "smoke-test"]  # fmt: skip
    assert spec.stage("evaluate").inputs() == ["finetune", "data"]
    assert spec.stage("register").inputs() == ["gate", "finetune"]


def test_quickstart_compares_against_the_best_base_prompt_and_gates_relatively() -> None:
    """The demo's headline is measured against the base model at its best prompt, and its gate has a
    relative rule, which refuses an empty champion (tests/unit/eval/test_eval_gates.py)."""
    from lmfoundry.pipeline.spec import build_options

    spec = load_pipeline(CONFIGS / "quickstart.yaml")
    evaluate = build_options(
        spec.stage("evaluate"), {"finetune": {"adapter_path": "a"}, "data": {"path": "d"}}
    )
    assert evaluate.prompt_search and evaluate.prompt is None and evaluate.shots is None
    assert evaluate.baseline_adapter is None and evaluate.search_limit > 0
    gate = spec.stage("gate").options["rules"]
    assert [rule["metric"] for rule in gate["relative"]] == ["rougeL"]


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([{"kind": "train"}], "unknown kind 'train'"),
        ([{"kind": "data", "size": 3}], "unknown option"),
        ([{"kind": "data", "n": "many"}], "expected int"),
        ([{"kind": "data"}, {"kind": "data"}], "duplicate stage name"),
        ([{"kind": "gate", "comparison": "${evaluate.comparison}"}], "does not run before it"),
        ([{"kind": "data", "needs": ["gate"]}], "needs 'gate'"),
        ([{"name": "x"}], "must be a mapping with a 'kind'"),
        ([], "non-empty list"),
    ],
)
def test_bad_pipelines_are_rejected(
    write_pipeline: Callable[..., Path], stages: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        load_pipeline(write_pipeline(stages))


def test_unknown_top_level_key(write_pipeline: Callable[..., Path]) -> None:
    with pytest.raises(InvalidInputError, match="unknown key"):
        load_pipeline(write_pipeline([{"kind": "data"}], stagess=[]))


def test_interpolation_keeps_types_and_reports_missing_outputs() -> None:
    outputs = {"a": {"n": 3, "path": "/x", "m": {"r": 0.5}}}
    assert interpolate({"k": "${a.n}", "s": "${a.path}/y", "l": ["${a.m.r}"]}, outputs) == {
        "k": 3,
        "s": "/x/y",
        "l": [0.5],
    }
    with pytest.raises(InvalidInputError, match="no output 'nope'"):
        interpolate("${a.nope}", outputs)
    with pytest.raises(InvalidInputError, match="no recorded outputs"):
        interpolate("${b.x}", outputs)


def test_cache_key_follows_options_files_and_inputs(
    write_pipeline: Callable[..., Path], tmp_path: Path
) -> None:
    rules = tmp_path / "gates.yaml"
    rules.write_text("absolute: [{metric: rougeL, min: 0.1}]\n")
    spec = load_pipeline(write_pipeline([
        {"kind": "data", "n": 30},
        {"kind": "gate", "comparison": "${data.path}/c.json", "gates": str(rules)},
    ]))  # fmt: skip
    gate = spec.stage("gate")
    key = stage_key(gate, spec.base_dir, {"data": {"path": "/a"}})
    assert key == stage_key(gate, spec.base_dir, {"data": {"path": "/a"}})
    assert key != stage_key(gate, spec.base_dir, {"data": {"path": "/b"}})
    rules.write_text("absolute: [{metric: rougeL, min: 0.2}]\n")
    assert key != stage_key(gate, spec.base_dir, {"data": {"path": "/a"}})
