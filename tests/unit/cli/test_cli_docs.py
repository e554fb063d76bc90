"""docs/cli.md is generated from the parsers and must match them."""

from __future__ import annotations

from pathlib import Path

from lmfoundry.cli._docs import render

DOC = Path(__file__).resolve().parents[3] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    assert DOC.read_text() == render(), "regenerate: python -m lmfoundry.cli._docs > docs/cli.md"
