"""log_run against a real MLflow sqlite store: params, metrics, artifacts, resolved config."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.track import runs


def test_default_uri_is_sqlite_under_lmf_home(lmf_home: Path) -> None:
    assert runs.tracking_uri() == f"sqlite:///{lmf_home / 'mlflow' / 'mlflow.db'}"
    assert runs.artifact_root() == (lmf_home / "mlflow" / "artifacts").as_uri()


def test_env_selects_a_tracking_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMF_TRACKING_URI", "http://mlflow.internal:5000")
    monkeypatch.setenv("LMF_ARTIFACT_ROOT", "s3://bucket/mlflow")
    assert runs.tracking_uri() == "http://mlflow.internal:5000"
    assert runs.artifact_root() == "s3://bucket/mlflow"


def test_flatten_and_numeric_metrics() -> None:
    assert runs.flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x" * 7000}) == {
        "a.b": "1",
        "a.c": "[1, 2]",
        "d": "x" * runs.MAX_PARAM_CHARS,
    }
    metrics = runs.numeric_metrics(
        {"loss": 1, "nan": math.nan, "s": "x", "n": None, "ok": True, "m": {"r": 0.5}}
    )
    assert metrics == {"loss": 1.0, "m.r": 0.5}


def test_log_run_records_everything(tmp_path: Path, lmf_home: Path) -> None:
    artifact = tmp_path / "summary.json"
    artifact.write_text('{"loss": 1.5}', encoding="utf-8")
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\x00\x01")
    run_id = runs.log_run(
        "finetune",
        {"model": {"name": "tiny"}, "training": {"lr": 0.001}},
        {"train_loss": 1.25, "eval_loss": None, "adapter_path": "/x"},
        [artifact, folder],
        {"model": {"name": "tiny"}},
    )
    run = runs.get_run(run_id)
    assert run["kind"] == "finetune" and run["status"] == "FINISHED"
    assert run["params"] == {"model.name": "tiny", "training.lr": "0.001"}
    assert run["metrics"] == {"train_loss": 1.25}
    stored = Path(run["artifact_uri"].removeprefix("file://"))
    assert stored.is_relative_to(lmf_home / "mlflow" / "artifacts")
    assert (stored / "summary.json").read_text() == '{"loss": 1.5}'
    assert (stored / "adapter" / "weights.bin").read_bytes() == b"\x00\x01"
    assert "name: tiny" in (stored / "resolved_config.yaml").read_text()


def test_log_run_rejects_missing_artifacts_and_bad_kind(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="do not exist"):
        runs.log_run("eval", {}, {}, [tmp_path / "nope.json"])
    with pytest.raises(InvalidInputError, match="run kind"):
        runs.log_run("bad kind!", {}, {})
