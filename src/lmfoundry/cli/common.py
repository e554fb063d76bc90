"""Helpers shared by the command modules: JSON or text output, the parsers of command groups and
their subcommands, and common options."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from lmfoundry import plugins
from lmfoundry.cli.commands import COMMANDS
from lmfoundry.errors import InvalidInputError


def print_json(data: Any) -> None:
    """Print one JSON object on one line (machine-readable `--json` output)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def print_result(args: argparse.Namespace, data: Any, show: Callable[[], object]) -> int:
    """A handler's output: `data` as one JSON object with `--json`, else what `show()` prints.
    Returns 0, the exit code."""
    if args.json:
        print_json(data)
    else:
        show()
    return 0


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def add_subcommand(
    commands: Any, name: str, handler: Callable[[argparse.Namespace], int], **options: Any
) -> argparse.ArgumentParser:
    """Add the subcommand `name`, run by `handler`, to a group's `commands` (`add_command_group`);
    `options` (help, description, ...) go to `add_parser`. Returns its parser, for its arguments."""
    parser: argparse.ArgumentParser = commands.add_parser(name, **options)
    parser.set_defaults(handler=handler)
    return parser


def add_command_group(subparsers: Any, name: str, *, metavar: str = "SUBCOMMAND", **options: Any) -> Any:
    """Add the command `name` whose work is done by subcommands, and return the action to add them
    to (`args.NAME_command` is the one given); its help line is the one in `COMMANDS`, and
    `options` (description, ...) go to `add_parser`. Given no subcommand, every group prints its
    own help and exits 0, as bare `lmf` does."""
    parser = subparsers.add_parser(name, help=COMMANDS[name][1], **options)
    commands = parser.add_subparsers(dest=f"{name}_command", metavar=metavar)
    parser.set_defaults(handler=lambda args: parser.print_help() or 0)
    return commands


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """Sampling flags shared by `generate`, `chat` and friends (None = the model's default)."""
    group = parser.add_argument_group("sampling")
    group.add_argument("--temperature", type=float, help="0 = greedy and deterministic (default 0.7)")
    group.add_argument("--top-k", type=int, help="keep the k most likely tokens (0 = off)")
    group.add_argument("--top-p", type=float, help="nucleus sampling mass in (0, 1]")
    group.add_argument("--min-p", type=float, help="drop tokens below min_p x the top probability")
    group.add_argument("--repetition-penalty", type=float, help=">1 discourages repeats")
    group.add_argument("--max-new-tokens", type=int, help="upper bound on generated tokens (default 256)")
    group.add_argument("--stop", action="append", help="stop sequence (repeatable)")
    group.add_argument("--seed", type=int, help="random seed for reproducible sampling")


def sampling_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling flags the user actually gave, as SamplingParams field values."""
    keys = ["temperature", "top_k", "top_p", "min_p", "repetition_penalty", "max_new_tokens", "stop", "seed"]
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse `type=` that runs a library parser: its error becomes a usage error (exit 2),
    so a bad option spec is reported before any model, store or file is opened."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except InvalidInputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def plugin_name(kind: str, *also: str) -> Callable[[str], str]:
    """An argparse `type=` accepting a registered `kind` name (built-in or a plugin's) or `also`."""

    def check(name: str) -> str:
        if name in also:
            return name
        plugins.get(kind, name)  # an unknown name is an error naming the known ones
        return name

    return checked(check)
