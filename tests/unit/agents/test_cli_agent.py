from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lmfoundry.cli.main import main


def test_group_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent"]) == 0
    out = capsys.readouterr().out
    assert "run" in out and "eval" in out


def test_tool_options_are_checked_before_the_model_loads(tmp_path: Path) -> None:
    lmf = Path(sys.executable).parent / "lmf"
    cases = [
        (["--tools", "sql"], "the sql tool needs a database: --sql-db PATH"),
        (["--tools", "shell"], "unknown tool(s): shell"),
        (["--tools", "http_get"], "http_get needs at least one allowed host"),
        (["--sql-db", str(tmp_path / "none.db")], "SQLite database not found"),
        (
            ["--base-url", "http://127.0.0.1:9/v1", "--adapter", "x"],
            "--adapter applies to a model loaded here",
        ),
    ]
    for extra, message in cases:
        proc = subprocess.run([str(lmf), "agent", "run", "no-such-model", "task", *extra],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
