"""`lmf studio` refuses bad options before it loads a model."""

from __future__ import annotations

import pytest

from lmfoundry.cli.main import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--adapter", "no-equals-sign"], "--adapter expects NAME=PATH"),
        (["--port", "0"], "--port must be in 1..65535"),
        (["--api-keys-file", "/nonexistent/keys"], "API keys file not found"),
    ],
)
def test_bad_options_fail_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["studio", "tiny-model-that-is-never-loaded", *argv]) == 1
    assert message in capsys.readouterr().err


def test_help_names_the_pages_and_the_local_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["studio", "--help"])
    out = capsys.readouterr().out
    assert "arena" in out and "127.0.0.1" in out
