"""`lmf registry list | show | promote | rollback`: registered models, versions and the champion alias."""

from __future__ import annotations

import argparse
from typing import Any

from lmfoundry.cli.common import add_command_group, add_json_flag, add_subcommand, print_result
from lmfoundry.pipeline.server_control import http_client, load_adapter
from lmfoundry.track.registry import list_models, promote, resolve, rollback, show

DESCRIPTION = (
    "The model registry (MLflow; sqlite under $LMF_HOME/mlflow unless LMF_TRACKING_URI "
    "names a tracking server). A version points at a base model and an adapter directory; "
    "the `champion` alias marks the one in production. With --server, promote and rollback "
    "also hot-load the new champion's adapter into a running `lmf serve` (or vLLM) under "
    "the alias name, so clients of MODEL:champion get it at once."
)


def register(subparsers: Any) -> None:
    commands = add_command_group(subparsers, "registry", description=DESCRIPTION)
    ls = add_subcommand(
        commands, "list", _list, help="registered models with their latest version and aliases"
    )
    add_json_flag(ls)

    show = add_subcommand(
        commands, "show", _show, help="a model's versions, pointers, aliases and alias history"
    )
    show.add_argument("name")
    add_json_flag(show)

    promote = add_subcommand(
        commands, "promote", _promote, help="point an alias (default champion) at a version"
    )
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    promote.add_argument("--alias", default="champion", help="alias to move (default champion)")
    _add_server_options(promote)

    rollback = add_subcommand(
        commands, "rollback", _rollback, help="move the alias back to the version that held it before"
    )
    rollback.add_argument("name")
    rollback.add_argument("--alias", default="champion", help="alias to move back (default champion)")
    _add_server_options(rollback)


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="URL", help="also load the new holder's adapter into this server")
    parser.add_argument(
        "--server-kind", default="lmf", choices=["lmf", "vllm"], help="API of --server (default lmf)"
    )
    parser.add_argument("--api-key", help="bearer key for --server")
    add_json_flag(parser)


def _list(args: argparse.Namespace) -> int:
    rows = list_models()
    return print_result(args, rows, lambda: _print_models(rows))


def _print_models(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no registered models (a pipeline's register stage adds them)")
    for row in rows:
        aliases = ", ".join(f"{k}=v{v}" for k, v in sorted(row["aliases"].items())) or "-"
        print(f"{row['name']:<30} versions {row['versions']:<4} latest v{row['latest']}  aliases: {aliases}")


def _show(args: argparse.Namespace) -> int:
    info = show(args.name)
    return print_result(args, info, lambda: _print_info(info))


def _print_info(info: dict[str, Any]) -> None:
    print(f"{info['name']}: aliases {info['aliases'] or '-'}")
    for v in info["versions"]:
        aliases = f" [{', '.join(v['aliases'])}]" if v["aliases"] else ""
        print(
            f"  v{v['version']}{aliases}  base {v['base']}  adapter {v['adapter'] or '-'}  run {v['run_id'] or '-'}"
        )
    for alias, versions in info["alias_history"].items():
        print(f"  {alias} history: {' -> '.join(f'v{x}' for x in versions)}")


def _sync(args: argparse.Namespace, name: str, alias: str) -> str:
    if not args.server:
        return ""

    version, pointer = resolve(name, alias)
    if not pointer.adapter:
        return f"; v{version} has no adapter, server left as it is"
    with http_client(args.server, args.api_key, timeout=120.0) as client:
        load_adapter(client, alias, pointer.adapter, args.server_kind)
    return f"; {args.server} now serves it as {alias}"


def _promote(args: argparse.Namespace) -> int:
    moved = promote(args.name, args.version, args.alias)
    note = _sync(args, args.name, args.alias)
    was = f" (was v{moved['previous']})" if moved["previous"] is not None else ""
    return print_result(
        args,
        {**moved, "server": args.server},
        lambda: print(f"{args.name}: {args.alias} -> v{moved['version']}{was}{note}"),
    )


def _rollback(args: argparse.Namespace) -> int:
    moved = rollback(args.name, args.alias)
    note = _sync(args, args.name, args.alias)
    return print_result(
        args,
        {**moved, "server": args.server},
        lambda: print(
            f"{args.name}: {args.alias} rolled back v{moved['previous']} -> v{moved['version']}{note}"
        ),
    )
