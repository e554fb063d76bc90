"""The command table of `lmf`: every command's listed help is what its module registers, and a
command's module is imported only when that command runs."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from lmfoundry.cli.main import COMMANDS, build_parser, main


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {choice.dest: choice.help for choice in action._choices_actions}


def test_the_table_matches_what_the_modules_register() -> None:
    registered = _subcommands(build_parser())
    assert registered == {name: help_text for name, (_module, help_text) in COMMANDS.items()}


def test_one_command_builds_only_its_module_and_lists_the_rest() -> None:
    parser = build_parser("models")
    assert set(_subcommands(parser)) == set(COMMANDS)
    assert parser.parse_args(["models", "list"]).handler is not None


def test_top_level_help_imports_no_command_module() -> None:
    code = (
        "import sys\nfrom lmfoundry.cli.main import main\n"
        "TABLE = ('lmfoundry.cli.main', 'lmfoundry.cli.commands')\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('lmfoundry.cli.') and m not in TABLE))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_no_command_prints_help_and_an_unknown_one_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["nonsense"])
    assert exit_info.value.code == 2


def _command_groups() -> list[str]:
    """The commands whose work is done by subcommands (`lmf eval run`, `lmf models list`, ...)."""
    choices = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    return [
        name
        for name, parser in choices.items()
        if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions) and name != "serve"
    ]


@pytest.mark.parametrize("group", _command_groups())
def test_every_command_group_given_no_subcommand_prints_its_own_help(
    group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([group]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: lmf {group} ")
    assert "positional arguments" in out
