"""`lmf monitor`: a window of cooking questions drifts from one of Python questions; two samples of
the Python mix do not. The p-values are printed (run with -s) and quoted in docs/monitoring.md."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.errors import InvalidInputError
from lmfoundry.monitor.drift import Thresholds, compare_windows, load_thresholds
from lmfoundry.monitor.window import load_window, parse_range
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.stages import monitor as monitor_stage
from support.traffic import mix, rows, write_capture, write_jsonl

DAY = 86400.0
N = 60


@pytest.fixture(scope="module")
def embed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embed_home")


@pytest.fixture(autouse=True)
def shared_embedding_cache(embed_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One $LMF_HOME (so one embedding cache) for the module: each prompt is embedded once."""
    monkeypatch.setenv("LMF_HOME", str(embed_home))


def _p_values(result: Any) -> dict[str, float | None]:
    return {c.name: c.p_value for c in result.checks}


@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One capture database holding last month's Python traffic (reference) and today's cooking
    traffic, plus a JSONL file with a second Python sample from today."""
    folder = tmp_path_factory.mktemp("traffic")
    now = time.time()
    reference = rows(mix("python", N, seed=1), now - 30 * DAY, seed=1)
    cooking = rows(mix("cooking", N, seed=2), now - 0.5 * DAY, seed=2)
    python_today = rows(mix("python", N, seed=3), now - 0.5 * DAY, seed=3)
    return {
        "db": write_capture(folder / "capture.db", reference + cooking),
        "python_today": write_jsonl(folder / "python_today.jsonl", python_today),
    }


def test_different_mix_is_flagged(windows: dict[str, Path], embedder: Any) -> None:
    reference = load_window(windows["db"], *parse_range("40d..20d"))
    current = load_window(windows["db"], *parse_range("1d.."))
    assert len(reference.exchanges) == len(current.exchanges) == N
    result = compare_windows(reference, current, embedder, n_permutations=500)
    p = _p_values(result)
    print(f"\ndrifted window (python -> cooking) p-values: {p}")
    flagged = {c.name for c in result.checks if c.flagged}
    assert result.drifted
    assert {"input_embedding", "novel_requests"} <= flagged
    assert p["input_embedding"] is not None and p["input_embedding"] < 0.01
    assert any(word in " ".join(result.novel_examples) for word in ("bake", "cook", "make", "roast", "boil"))


def test_same_mix_is_not_flagged(windows: dict[str, Path], embedder: Any) -> None:
    reference = load_window(windows["db"], *parse_range("40d..20d"))
    current = load_window(windows["python_today"])
    result = compare_windows(reference, current, embedder, n_permutations=500)
    p = _p_values(result)
    print(f"\nsame mix (python, two samples) p-values: {p}")
    assert not result.drifted, [c for c in result.checks if c.flagged]
    assert p["input_embedding"] is not None and p["input_embedding"] > 0.05
    latency = next(c for c in result.checks if c.name == "latency_p95")
    assert latency.p_value is not None and latency.rule != "skipped"  # the JSONL rows carry latency_s


def test_cli_exit_codes_and_report(
    windows: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["monitor", str(windows["db"]), str(windows["db"]), "--reference-range", "40d..20d",
            "--current-range", "1d..", "--permutations", "200", "--json"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "drift")]) == 3
    summary = json.loads(capsys.readouterr().out)
    assert summary["drifted"] and "input_embedding" in summary["flagged"]
    html = (tmp_path / "drift" / "report.html").read_text()
    assert "DRIFT" in html and "data:image/png;base64," in html
    assert json.loads((tmp_path / "drift" / "summary.json").read_text())["flagged"] == summary["flagged"]
    same = ["monitor", str(windows["python_today"]), str(windows["python_today"]), "--permutations", "200"]
    assert main([*same, "--out", str(tmp_path / "same")]) == 0


def test_thresholds_turn_gates_off(windows: dict[str, Path], embedder: Any, tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("embedding: false\nnovel_share: null\nalpha: 0.001\n")
    thresholds = load_thresholds(path)
    reference = load_window(windows["db"], *parse_range("40d..20d"))
    current = load_window(windows["db"], *parse_range("1d.."))
    result = compare_windows(reference, current, embedder, thresholds=thresholds, n_permutations=200)
    off = {c.name: c for c in result.checks if c.name in ("input_embedding", "novel_requests")}
    assert all(not c.flagged and c.rule == "off" for c in off.values())
    assert (
        off["input_embedding"].p_value is not None and off["input_embedding"].p_value < 0.01
    )  # still reported


def test_pipeline_stage_stops_on_drift(windows: dict[str, Path], tmp_path: Path) -> None:
    ctx = StageContext("monitor", tmp_path, tmp_path / "work", {})
    options = monitor_stage.Options(reference=str(windows["db"]), current=str(windows["db"]),
                                    reference_range="40d..20d", current_range="1d..", permutations=200)  # fmt: skip
    with pytest.raises(monitor_stage.DriftDetected, match="input_embedding"):
        monitor_stage.run(ctx, options)
    assert (ctx.stage_dir / "report.html").is_file() and (ctx.stage_dir / "summary.json").is_file()


def test_bad_inputs_have_clear_errors(windows: dict[str, Path], tmp_path: Path, embedder: Any) -> None:
    with pytest.raises(InvalidInputError, match="capture file not found"):
        load_window(tmp_path / "missing.db")
    with pytest.raises(InvalidInputError, match="no captured exchanges in the given time range"):
        load_window(windows["db"], *parse_range("100d..90d"))
    with pytest.raises(InvalidInputError, match="START..END"):
        parse_range("7d")
    with pytest.raises(InvalidInputError, match="cannot read time"):
        parse_range("yesterday..")
    with pytest.raises(InvalidInputError, match="ends before it starts"):
        parse_range("2026-12-02..2026-12-01")
    bad = tmp_path / "t.yaml"
    bad.write_text("alpha: 2\nsurprise: 1\n")
    with pytest.raises(InvalidInputError, match="invalid monitor thresholds"):
        load_thresholds(bad)
    not_db = tmp_path / "notes.db"
    not_db.write_text("not sqlite")
    with pytest.raises(InvalidInputError, match="not a capture database"):
        load_window(not_db)
    small = load_window(write_jsonl(tmp_path / "small.jsonl", rows(mix("python", 5, seed=9), 0.0, seed=9)))
    with pytest.raises(InvalidInputError, match="at least 10"):
        compare_windows(small, small, embedder, thresholds=Thresholds())
    incomplete = tmp_path / "incomplete.jsonl"
    incomplete.write_text('{"created": 1}\n')
    with pytest.raises(InvalidInputError, match="needs endpoint, request, response"):
        load_window(incomplete)
