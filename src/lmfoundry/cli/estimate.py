"""`lmf estimate`: predict a workload's peak RAM, component by component, and optionally measure it."""

from __future__ import annotations

import argparse
from typing import Any

from lmfoundry.cli.common import add_json_flag, print_result
from lmfoundry.memory.planner import Workload, plan

MODES = ("inference", "lora", "qlora", "full")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "estimate",
        help="predict peak RAM for inference or training (weights, KV cache, gradients, optimizer, activations)",
        description="Predict the peak resident memory (RSS) of running MODEL, from its config and "
        "safetensors header only (no weights loaded). Every component comes with its formula "
        "(docs/memory.md). --measure runs the workload briefly in a subprocess and prints its "
        "measured peak RSS beside the estimate.",
    )
    parser.add_argument(
        "model", help="store name, packaged model (smollm2-135m-instruct) or transformers directory"
    )
    parser.add_argument("--mode", choices=MODES, default="inference", help="workload (default: inference)")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="weight/activation dtype",
    )
    parser.add_argument("--quant", choices=("nf4", "int8", "fp4"), help="quantize block linears (qlora: nf4)")
    parser.add_argument("--seq-len", type=int, default=512, help="tokens per sequence (default 512)")
    parser.add_argument("--batch", type=int, default=1, help="sequences per batch (default 1)")
    parser.add_argument("--lora-rank", type=int, default=8, help="LoRA rank on all block linears (default 8)")
    parser.add_argument("--new-tokens", type=int, default=4, help="inference: tokens decoded after prefill")
    parser.add_argument(
        "--measure",
        action="store_true",
        help="also run the workload (a few decode/optimizer steps, fp32) in a subprocess and report its peak RSS",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=_estimate)


def _estimate(args: argparse.Namespace) -> int:
    workload = Workload(
        mode=args.mode,
        dtype=args.dtype,
        quant=args.quant,
        seq_len=args.seq_len,
        batch=args.batch,
        lora_rank=args.lora_rank,
        new_tokens=args.new_tokens,
    )
    if args.measure and not args.json:
        from rich.console import Console

        with Console(stderr=True).status("running the workload to measure its peak RSS..."):
            result = plan(args.model, workload, measure_peak=True)
    else:
        result = plan(args.model, workload, measure_peak=args.measure)
    return print_result(args, result, lambda: _print_table(result))


def _mib(value: int) -> str:
    return f"{value / 2**20:,.1f} MiB"


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    w = result["workload"]
    title = (
        f"{result['model']}: {w['mode']}, {w['dtype']}{', ' + w['quant'] if w['quant'] else ''}, "
        f"batch {w['batch']} x seq {w['seq_len']} ({result['parameters']:,} params, "
        f"{result['trainable_parameters']:,} trainable)"
    )
    table = Table("COMPONENT", "BYTES", "FORMULA", title=title, box=None, title_justify="left")
    for name, value in result["components"].items():
        table.add_row(name, _mib(value), result["formulas"][name])
    table.add_row("total", _mib(result["total_bytes"]), "sum of the above (predicted peak RSS)", style="bold")
    per = "24 B/param (Adam)" if w["mode"] == "full" else "dtype bytes/param"
    table.add_row("rule of thumb", _mib(result["rule_of_thumb_bytes"]), per, style="dim")
    if "measured_peak_bytes" in result:
        table.add_row(
            "measured",
            _mib(result["measured_peak_bytes"]),
            f"peak RSS (VmHWM); estimate/measured = {result['ratio']:.3f}",
        )
    console = Console()
    console.print(table)
    for note in result["notes"]:
        console.print(f"note: {note}")
