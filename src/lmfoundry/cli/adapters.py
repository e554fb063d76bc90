"""`lmf adapters merge|check`: fold a trained adapter into its base; verify adapter == merged == GGUF."""

from __future__ import annotations

import argparse
from typing import Any

from lmfoundry.cli.common import add_command_group, add_json_flag, add_subcommand, print_result
from lmfoundry.finetune.export.check import CheckReport, check
from lmfoundry.finetune.export.merge import merge_to_store

DESCRIPTION = "Work with the adapters `lmf finetune` writes (RUN = a run folder or its adapter/ folder)."


def register(subparsers: Any) -> None:
    commands = add_command_group(subparsers, "adapters", description=DESCRIPTION)
    merge = add_subcommand(
        commands,
        "merge",
        _merge,
        help="merge an adapter into its base weights as a new store model",
        description=(
            "Load the run's base model, fold the adapter into its weights (LoRA, QLoRA, AdaLoRA, IA3; "
            "full fine-tuning runs are copied as they are) and save the result in the model store "
            "as NEW, usable by `lmf generate NEW` and `lmf export gguf NEW`."
        ),
    )
    merge.add_argument("run", metavar="RUN_OR_ADAPTER", help="fine-tuning run folder or its adapter folder")
    merge.add_argument("--name", required=True, help="store name of the merged model")
    merge.add_argument("--force", action="store_true", help="replace an existing store entry of that name")
    add_json_flag(merge)

    check = add_subcommand(
        commands,
        "check",
        _check,
        help="compare adapter, merged model and GGUF outputs on the same prompts",
        description=(
            "Run the same prompts through the adapter (transformers), the merged model "
            "(transformers) and the merged model exported to an f32 GGUF (llama.cpp); report the "
            "largest next-token logit difference and greedy agreement. Exits 1 when agreement is "
            "below --threshold or the difference above --max-diff."
        ),
    )
    check.add_argument("run", metavar="RUN", help="fine-tuning run folder or its adapter folder")
    check.add_argument(
        "--prompt", action="append", help="prompt to compare (repeatable; default: 3 built-in prompts)"
    )
    check.add_argument("--max-new-tokens", type=int, default=24, help="greedy tokens per prompt (default 24)")
    check.add_argument(
        "--threshold", type=float, default=0.9, help="minimum greedy agreement in [0, 1] (default 0.9)"
    )
    check.add_argument(
        "--max-diff",
        type=float,
        default=0.1,
        help="largest tolerated next-token logit difference (default 0.1)",
    )
    check.add_argument("--no-gguf", action="store_true", help="skip the GGUF / llama.cpp leg")
    add_json_flag(check)


def _merge(args: argparse.Namespace) -> int:
    folder = merge_to_store(args.run, args.name, force=args.force)
    return print_result(
        args,
        {"name": args.name, "path": str(folder)},
        lambda: print(f"merged {args.run} -> store model {args.name} ({folder})"),
    )


def _check(args: argparse.Namespace) -> int:
    from rich.console import Console

    report = check(
        args.run,
        prompts=args.prompt,
        max_new_tokens=args.max_new_tokens,
        threshold=args.threshold,
        max_diff=args.max_diff,
        gguf=not args.no_gguf,
    )
    print_result(args, report.to_dict(), lambda: _print_prompts(report))
    console = Console(stderr=True)
    if not report.ok:
        console.print(
            f"[bold red]MISMATCH: greedy agreement {report.agreement:.2f} (threshold {report.threshold:.2f}), "
            f"max logit diff {report.max_logit_diff:.3g} (tolerance {report.max_diff:.3g})[/]"
        )
        return 1
    console.print(
        f"[green]OK: agreement {report.agreement:.2f}, max logit diff {report.max_logit_diff:.3g}[/]"
    )
    return 0


def _print_prompts(report: CheckReport) -> None:
    for i, p in enumerate(report.prompts, start=1):
        gguf = (
            f"  gguf diff {p.gguf_max_logit_diff:.2e} agree {p.gguf_agreement:.2f}"
            if p.gguf_agreement is not None
            else ""
        )
        print(f"prompt {i}: merged diff {p.merged_max_logit_diff:.2e} agree {p.merged_agreement:.2f}{gguf}")
