"""`lmf` entry point: a table of commands, each implemented by one module of this package.

A command's module (its `register(subparsers)`, its handlers and the library they call) is
imported only when that command runs, so `lmf --help` and `lmf COMMAND --help` import no more
than they show. `COMMANDS` (commands.py) holds each command's one-line help for the top-level
listing, and a command group takes its help from there; a test checks the table against what each
module registers.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lmfoundry import __version__
from lmfoundry.cli.commands import COMMANDS
from lmfoundry.errors import LmfError


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `lmf` parser with every command's full parser when `command` is None (docs, tests), else
    with `command`'s module registered and the other commands listed by name and help only."""
    parser = argparse.ArgumentParser(
        prog="lmf",
        description=(
            "lmfoundry: run, quantize, fine-tune, align, ground (RAG), evaluate and serve open "
            "language models from one CLI. Models come from the local store ($LMF_HOME, default "
            "~/.cache/lmfoundry), packaged model wheels, local directories and GGUF files."
        ),
        epilog="Run `lmf COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"lmfoundry {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = set(COMMANDS) if command is None else {command}
    modules = sorted({COMMANDS[name][0] for name in wanted if name in COMMANDS})
    for module in modules:
        importlib.import_module(f"lmfoundry.cli.{module}").register(subparsers)
    for name, (module, help_text) in COMMANDS.items():
        if module not in modules:
            subparsers.add_parser(name, help=help_text)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command word of `argv` (its first non-option argument), if it names one."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the chosen command, return its exit code.

    User errors (`LmfError`) print one line on stderr and return 1; argparse errors return 2.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    parser = build_parser(command) if command else build_parser("")
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        code = handler(args)
    except LmfError as exc:
        print(f"lmf: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lmf: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
