"""`lmf` entry point: discovers the command-group modules in this package and dispatches."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import lmfoundry.cli as cli_package
from lmfoundry import __version__
from lmfoundry.errors import LmfError

_NOT_GROUPS = {"main", "common"}


def build_parser() -> argparse.ArgumentParser:
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
    for info in sorted(pkgutil.iter_modules(cli_package.__path__), key=lambda m: m.name):
        if info.name in _NOT_GROUPS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"lmfoundry.cli.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the chosen command, return its exit code.

    User errors (`LmfError`) print one line on stderr and return 1; argparse errors return 2.
    """
    parser = build_parser()
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
