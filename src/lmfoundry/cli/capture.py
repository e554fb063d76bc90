"""`lmf capture export`: turn traffic captured by `lmf serve --capture DB` into training/eval JSONL;
`lmf capture shadow-pairs`: a rollout's shadow pairs as two outputs folders to judge side by side."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lmfoundry.cli.common import add_command_group, add_json_flag, add_subcommand, print_json, print_result
from lmfoundry.errors import InvalidInputError
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.serve.capture import CaptureStore, export_records
from lmfoundry.serve.shadow_pairs import read_pairs, write_split

DESCRIPTION = (
    "Work with the traffic a server recorded: the SQLite capture of its requests and responses "
    "(`lmf serve --capture`), and the shadow pairs of a rollout (`shadow.pairs` in `--rollout`)."
)


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
    _register_shadow_pairs(sub)


def _register_shadow_pairs(sub: Any) -> None:
    s = add_subcommand(
        sub,
        "shadow-pairs",
        _shadow_pairs,
        help="split a rollout's shadow pairs into served/ and shadow/ outputs folders for `lmf eval judge`",
        description="Reads the JSONL of (served, shadow) answers a rollout's shadow variant wrote and writes "
        "OUT/served/outputs.jsonl and OUT/shadow/outputs.jsonl ({id, input, output}), so the live answers "
        "are judged side by side without re-running either model: "
        "`lmf eval judge JUDGE --outputs OUT/served --pairwise OUT/shadow`. To re-run both models on the "
        "same inputs instead: `lmf eval compare CHAMPION CHALLENGER --task jsonl:PAIRS`.",
    )
    s.add_argument("pairs", help="the shadow pairs file (`shadow.pairs` of the rollout)")
    s.add_argument("--out", "-o", required=True, help="folder for served/ and shadow/")
    add_json_flag(s)


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


def _shadow_pairs(args: argparse.Namespace) -> int:
    records = read_pairs(args.pairs)
    served, shadow = write_split(records, args.out)
    data = {
        "pairs": len(records),
        "served": str(served),
        "shadow": str(shadow),
        "served_variants": sorted({str(r.get("served_variant")) for r in records}),
        "shadow_variants": sorted({str(r.get("shadow_variant")) for r in records}),
    }
    return print_result(args, data, lambda: _print_split(data))


def _print_split(data: dict[str, Any]) -> None:
    print(f"{data['pairs']} pairs")
    print(f"  served answers ({', '.join(data['served_variants'])}): {data['served']}")
    print(f"  shadow answers ({', '.join(data['shadow_variants'])}): {data['shadow']}")
    print(f"judge them: lmf eval judge JUDGE --outputs {data['served']} --pairwise {data['shadow']}")
