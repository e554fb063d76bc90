"""`lmf capture export`: turn traffic captured by `lmf serve --capture DB` into training/eval JSONL."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmfoundry.cli.common import add_command_group, add_subcommand, print_json
from lmfoundry.errors import InvalidInputError
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.serve.capture import CaptureStore, export_records

DESCRIPTION = "Work with the SQLite capture of a server's requests and responses."


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_command_group(subparsers, "capture", description=DESCRIPTION)
    e = add_subcommand(
        sub,
        "export",
        _export,
        help="write captured exchanges as JSONL (sft, dpo or eval records)",
        description="sft: {messages} chat records for `lmf finetune`; dpo: {prompt, chosen, rejected} "
        "from choices rated through POST /v1/feedback; eval: {id, input, reference} for `lmf eval` "
        "(jsonl:PATH tasks).",
    )
    e.add_argument("db", help="the capture database given to `lmf serve --capture`")
    e.add_argument("--format", required=True, choices=["sft", "dpo", "eval"], help="record format to write")
    e.add_argument("--output", "-o", help="JSONL file to write (default: standard output)")


def _export(args: argparse.Namespace) -> int:
    if not Path(args.db).is_file():
        raise InvalidInputError(f"capture database not found: {args.db}")
    store = CaptureStore(args.db)
    try:
        lines = [json.dumps(record, ensure_ascii=False) for record in export_records(store, args.format)]
    finally:
        store.close()
    text = "".join(line + "\n" for line in lines)
    if args.output:
        atomic_write_text(Path(args.output), text)
        print_json({"output": args.output, "format": args.format, "records": len(lines)})
    else:
        sys.stdout.write(text)
    return 0
