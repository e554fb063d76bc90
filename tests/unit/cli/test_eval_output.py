"""Tables of `lmf eval` written to a log or a pipe keep each row on one line."""

from __future__ import annotations

import pytest

from lmfoundry.cli.eval_output import PIPE_WIDTH, print_table

COLUMNS = ("approach", "rougeL", "vs zero-shot (95% CI)", "empty", "truncated", "prompt tokens", "latency")
ROW = ("fine-tuned run-3c21008876", "0.7565", "+0.4602 [+0.3938, +0.5253]", "0.00", "0.00", "151", "2.81")


def test_a_table_sent_to_a_pipe_is_not_folded_to_80_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    print_table("approaches", COLUMNS, [ROW])
    lines = capsys.readouterr().out.splitlines()
    assert any("fine-tuned run-3c21008876" in line and "+0.4602 [+0.3938, +0.5253]" in line for line in lines)
    assert max(len(line) for line in lines) <= PIPE_WIDTH


def test_columns_set_by_the_user_still_decides_the_width(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    print_table("approaches", COLUMNS, [ROW])
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= 60
