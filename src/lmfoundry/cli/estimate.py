"""`lmf estimate`: predict a workload's peak RAM, component by component, and optionally measure it;
`lmf estimate --pretrain`: size a pretraining run (tokens, FLOPs, memory, wall time)."""

from __future__ import annotations

import argparse
from typing import Any

from lmfoundry.cli.common import add_json_flag, print_result
from lmfoundry.errors import InvalidInputError
from lmfoundry.finetune.train.sizing import size_pretraining
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
        "model",
        nargs="?",
        help="store name, packaged model (smollm2-135m-instruct) or transformers directory",
    )
    parser.add_argument(
        "--pretrain",
        metavar="CONFIG|COUNT",
        help="size a pretraining run instead: a configs/pretrain/*.yaml file (memory and throughput "
        "measured for its model) or a parameter count (20M, 1.5B): Chinchilla tokens (20/param), "
        "6*N*D FLOPs, memory, wall time",
    )
    parser.add_argument("--tokens", type=float, help="--pretrain: train tokens D (default: 20 x params)")
    parser.add_argument(
        "--device-tflops",
        type=float,
        help="--pretrain: time the run on a device of this peak TFLOP/s (x --mfu) instead of measuring here",
    )
    parser.add_argument(
        "--mfu",
        type=float,
        default=0.4,
        help="--pretrain: FLOPs utilisation assumed with --device-tflops (0.4)",
    )
    parser.add_argument(
        "--measure-steps", type=int, default=3, help="--pretrain CONFIG: optimizer steps timed here (3)"
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
    if args.pretrain:
        return _pretrain(args)
    if not args.model:
        raise InvalidInputError("name a MODEL, or size a pretraining run with --pretrain CONFIG|COUNT")
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


def _pretrain(args: argparse.Namespace) -> int:
    if args.measure_steps < 1:
        raise InvalidInputError(f"--measure-steps must be >= 1, got {args.measure_steps}")
    tokens = int(args.tokens) if args.tokens else None
    call = lambda: size_pretraining(  # noqa: E731
        args.pretrain, tokens=tokens, device_tflops=args.device_tflops, mfu=args.mfu, steps=args.measure_steps
    )
    if args.json:
        sizing = call()
    else:
        from rich.console import Console

        with Console(stderr=True).status("sizing (timing a few training steps of the model here)..."):
            sizing = call()
    result = sizing.to_dict()
    return print_result(args, result, lambda: _print_pretrain(result))


def _print_pretrain(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("QUANTITY", "VALUE", "HOW", box=None, title=result["shape"] or None, title_justify="left")
    table.add_row("parameters N", f"{result['params']:,}", "6*N*D counts the input embedding once if tied")
    table.add_row("Chinchilla tokens", f"{result['chinchilla_tokens']:,}", "20 tokens per parameter")
    table.add_row("tokens D", f"{result['tokens']:,}", "sized for")
    table.add_row("training FLOPs", f"{result['flops']:.3e}", "6*N*D")
    if result["memory_bytes"] is not None:
        table.add_row("peak memory", _mib(result["memory_bytes"]), "memory planner, full training")
    if result["tokens_per_s"]:
        table.add_row("throughput", f"{result['tokens_per_s']:,.0f} tokens/s", result["throughput"])
    if result["seconds"] is not None:
        table.add_row("wall time", _duration(result["seconds"]), "D / throughput", style="bold")
    console = Console()
    console.print(table)
    for note in result["notes"]:
        console.print(f"note: {note}")


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.1f} s"
