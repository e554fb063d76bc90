"""`lmf finetune` in-process: run folder contents, --json summary, errors as one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmfoundry.cli.main import main


def _write(config: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / "ft.yaml"
    path.write_text("# lmf finetune ft.yaml\n" + yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def test_finetune_cli_writes_the_run_folder(
    ft_config: Callable[..., dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(ft_config(), tmp_path)
    out_dir = tmp_path / "cli-run"
    assert main(["finetune", path, "training.max_steps=2", f"output_dir={out_dir}", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "train_loss",
        "eval_loss",
        "tokens_per_s",
        "peak_rss_bytes",
        "estimated_peak_bytes",
        "adapter_path",
    ):
        assert key in summary
    assert summary["steps"] == 2 and summary["peak_rss_bytes"] > 10_000_000 and summary["tokens_per_s"] > 0
    for name in (
        "resolved_config.yaml",
        "metrics.jsonl",
        "loss_curve.png",
        "summary.json",
        "checkpoint/state.pt",
        "adapter/adapter_config.json",
    ):
        assert (out_dir / name).is_file(), name
    assert yaml.safe_load((out_dir / "resolved_config.yaml").read_text())["training"]["max_steps"] == 2
    assert (out_dir / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    kinds = [json.loads(line)["kind"] for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert kinds.count("train") == 2 and "eval" in kinds


def test_finetune_cli_text_output(
    ft_config: Callable[..., dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(ft_config(training={"max_steps": 1}), tmp_path)
    assert main(["finetune", path, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "train_loss" in out and "adapter_path" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["training.nope=1"], "unknown config key"),
        (["--resume"], "nothing to resume"),
        (["data.path=/does/not/exist.jsonl"], "not found"),
        (["method.options.bogus=1"], "unknown option"),
        (["model.name=no-such-model"], "unknown model"),
    ],
)
def test_finetune_cli_errors(
    extra: list[str],
    message: str,
    ft_config: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _write(ft_config(), tmp_path)
    assert main(["finetune", path, *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_finetune_cli_missing_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["finetune", str(tmp_path / "missing.yaml")]) == 1
    assert "config file not found" in capsys.readouterr().err
