"""Gates YAML parsing, checks, markdown, and the `lmf eval gate` exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lmfoundry.cli.main import main
from lmfoundry.errors import LmfError
from lmfoundry.eval.gates import GateSpec, check_gates, load_gates

REPO = Path(__file__).resolve().parents[3]


def _comparison(
    rouge_l: float = 0.30,
    ci_low: float = -0.004,
    p95: float = 1.5,
    cost: float | None = 1.0,
    champion_empty: float | None = 0.0,
) -> dict:
    return {
        "task": "dialogsum-synthetic",
        "champion_model": "base",
        "challenger_model": "tuned",
        "n": 50,
        "confidence": 0.95,
        "metrics": {
            "rougeL": {
                "champion": 0.29,
                "challenger": rouge_l,
                "diff": rouge_l - 0.29,
                "ci_low": ci_low,
                "ci_high": 0.03,
                "wins": 20,
                "ties": 10,
                "losses": 20,
            },
        },  # fmt: skip
        "latency": {"e2e_s_p95": {"champion": 1.0, "challenger": p95, "diff": p95 - 1.0}},
        "cost_per_1m_tokens": {"champion": 1.0, "challenger": cost, "diff": None},
        **(
            {"outputs": {"empty_rate": {"champion": champion_empty, "challenger": 0.0, "diff": None}}}
            if champion_empty is not None
            else {}
        ),
    }


SPEC = GateSpec.model_validate(
    {
        "absolute": [{"metric": "rougeL", "min": 0.2}],
        "relative": [{"metric": "rougeL", "max_drop": 0.005}],
        "latency_p95_s": {"max": 2.0},
        "cost_per_1m_tokens": {"max": 5.0},
    }
)


def test_shipped_default_gates_load() -> None:
    path = REPO / "configs" / "gates" / "default.yaml"
    spec = load_gates(path)
    assert spec.relative and spec.absolute and spec.latency_p95_s and spec.cost_per_1m_tokens
    assert "lmf eval gate" in path.read_text().splitlines()[3]


def test_all_gates_pass() -> None:
    report = check_gates(SPEC, _comparison())
    assert report.passed
    assert [c.passed for c in report.checks] == [True, True, True, True]


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({"rouge_l": 0.19}, "rougeL"),
        ({"ci_low": -0.006}, "rougeL vs champion"),
        ({"p95": 2.5}, "latency p95 (s)"),
        ({"cost": 6.0}, "cost per 1M tokens (USD)"),
        ({"cost": None}, "cost per 1M tokens (USD)"),
    ],
)
def test_each_gate_can_fail(changes: dict, failing: str) -> None:
    report = check_gates(SPEC, _comparison(**changes))
    assert not report.passed
    assert [c.name for c in report.checks if not c.passed] == [failing]


def test_absolute_max_bound() -> None:
    spec = GateSpec.model_validate({"absolute": [{"metric": "rougeL", "max": 0.25}]})
    assert not check_gates(spec, _comparison()).passed


def test_markdown_table() -> None:
    text = check_gates(SPEC, _comparison(ci_low=-0.01)).markdown()
    assert "FAILED" in text
    assert "| check | rule | value | result |" in text
    assert "| rougeL vs champion | CI low >= -0.005 | diff +0.0100 [-0.0100, +0.0300] | ❌ fail |" in text
    assert "`base`" in text and "`tuned`" in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"absolute": [{"metric": "rougeL", "minimum": 0.2}]}, "Extra inputs"),
        ({"absolute": [{"metric": "rougeL"}]}, "needs 'min' or 'max'"),
        ({"relative": [{"metric": "rougeL", "max_drop": -1}]}, "max_drop"),
        ({"latency_p95": {"max": 1}}, "Extra inputs"),
        ({}, "no gates defined"),
    ],
)
def test_invalid_gate_files(tmp_path: Path, data: dict, message: str) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(LmfError, match=message):
        load_gates(path)


def test_gate_on_unknown_metric_is_an_error() -> None:
    spec = GateSpec.model_validate({"absolute": [{"metric": "bleu", "min": 0.1}]})
    with pytest.raises(LmfError, match="'bleu' is not in the comparison; available: rougeL"):
        check_gates(spec, _comparison())


def _write(tmp_path: Path, comparison: dict) -> tuple[Path, Path]:
    gates = tmp_path / "gates.yaml"
    gates.write_text(yaml.safe_dump(SPEC.model_dump(exclude_none=True)))
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps(comparison))
    return gates, path


def test_cli_gate_passes_with_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gates, comparison = _write(tmp_path, _comparison())
    md = tmp_path / "gate.md"
    assert main(["eval", "gate", str(gates), "--comparison", str(comparison), "--markdown", str(md)]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out
    assert md.read_text() == out


def test_cli_gate_fails_with_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gates, comparison = _write(tmp_path, _comparison(ci_low=-0.02))
    assert main(["eval", "gate", str(gates), "--comparison", str(comparison)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_cli_gate_reports_a_missing_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gates, _ = _write(tmp_path, _comparison())
    assert main(["eval", "gate", str(gates), "--comparison", str(tmp_path / "nope.json")]) == 1
    assert "comparison file not found" in capsys.readouterr().err


def test_a_relative_gate_cannot_pass_against_a_champion_that_printed_nothing() -> None:
    vacuous = check_gates(SPEC, _comparison(ci_low=0.2, champion_empty=1.0))
    relative = next(c for c in vacuous.checks if c.name == "rougeL vs champion")
    assert not vacuous.passed and not relative.passed
    assert "champion empty rate 1.00 > 0.05" in relative.value and "printed nothing" in relative.value
    assert check_gates(SPEC, _comparison(champion_empty=0.05)).passed  # at the threshold: a real comparison
    lenient = SPEC.model_copy(update={"max_champion_empty_rate": 1.0})
    assert check_gates(lenient, _comparison(champion_empty=1.0)).passed
    old = check_gates(SPEC, _comparison(champion_empty=None))  # written before empty rates were counted
    assert not old.passed and "re-run it" in next(c for c in old.checks if "vs champion" in c.name).value
