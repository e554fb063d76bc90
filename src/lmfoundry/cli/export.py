"""`lmf export gguf|onnx|onnx-check`: a store model, model directory or fine-tuning run as a GGUF file
or an ONNX folder (with its parity check against the fp32 transformers model)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from lmfoundry.cli.common import add_command_group, add_json_flag, add_subcommand, print_result
from lmfoundry.finetune.export.gguf import export
from lmfoundry.finetune.export.gguf_lora import export_lora
from lmfoundry.finetune.export.onnx import QUANTIZE, check_export, export_onnx
from lmfoundry.finetune.export.onnx_parity import TOLERANCES

DESCRIPTION = "Export a model to another runtime's format."


def register(subparsers: Any) -> None:
    commands = add_command_group(subparsers, "export", metavar="FORMAT", description=DESCRIPTION)
    gguf = add_subcommand(
        commands,
        "gguf",
        _gguf,
        help="write a Llama-family model (or a fine-tuning run, merged) to a GGUF file",
        description=(
            "Write MODEL_OR_RUN to GGUF for llama.cpp: a store model, a transformers directory, or a "
            "fine-tuning run (its adapter is merged first). Weights in f32 or f16 (norms stay f32), "
            "hyperparameters, the BPE tokenizer and the chat template. Without --out a store model "
            "gets model-OUTTYPE.gguf in its store folder (and uses it for the llama.cpp backend); "
            "anything else ./NAME-OUTTYPE.gguf. With --lora, a LoRA run's adapter alone becomes a "
            "llama.cpp GGUF adapter (default ./RUN-lora-OUTTYPE.gguf) to load on the base GGUF "
            "(`lmfoundry.load(base, backend='llama_cpp', adapters=[file])`, llama-cli --lora)."
        ),
    )
    gguf.add_argument(
        "model", metavar="MODEL_OR_RUN", help="store name, model directory or fine-tuning run folder"
    )
    gguf.add_argument(
        "--outtype", choices=["f32", "f16"], default="f16", help="weight precision (default f16)"
    )
    gguf.add_argument("--out", help="output .gguf file")
    gguf.add_argument(
        "--lora", action="store_true", help="write the run's LoRA adapter as a llama.cpp GGUF adapter"
    )
    add_json_flag(gguf)
    _register_onnx(commands)


def _register_onnx(commands: Any) -> None:
    onnx = add_subcommand(
        commands,
        "onnx",
        _onnx,
        help="write a Llama-family model (or a fine-tuning run, merged) as ONNX with its KV cache",
        description=(
            "Write MODEL_OR_RUN as an ONNX folder for ONNX Runtime with onnxruntime-genai's model builder: "
            "model.onnx (+ model.onnx.data) with past_key_values.N.key/value inputs and present.N.key/value "
            "outputs, genai_config.json and the tokenizer. A fine-tuning run's adapter is merged first. "
            "Without --out a store model gets onnx-PRECISION/ in its store folder, anything else "
            "./NAME-onnx-PRECISION. Then checks parity with the fp32 transformers model on held-out "
            "prompts (greedy agreement and max logit difference, teacher-forced through the KV cache; "
            "prefix agreement of free-running greedy decoding) and exits 1 if it fails."
        ),
    )
    onnx.add_argument(
        "model", metavar="MODEL_OR_RUN", help="store name, model directory or fine-tuning run folder"
    )
    onnx.add_argument(
        "--quantize", choices=QUANTIZE, help="blockwise int8 weights (MatMulNBits) instead of fp32"
    )
    onnx.add_argument("--out", help="output folder")
    onnx.add_argument("--force", action="store_true", help="replace an existing output folder")
    onnx.add_argument("--no-check", action="store_true", help="skip the parity check")
    _add_tolerances(onnx)
    add_json_flag(onnx)
    check = add_subcommand(
        commands,
        "onnx-check",
        _onnx_check,
        help="check an `lmf export onnx` folder against the fp32 transformers model again",
        description=(
            "Run the parity check of `lmf export onnx` on FOLDER against the model or run it was exported "
            "from (recorded in the folder) or --reference; exits 1 if it fails."
        ),
    )
    check.add_argument("folder", metavar="FOLDER", help="a folder written by `lmf export onnx`")
    check.add_argument("--reference", metavar="MODEL_OR_RUN", help="compare with this model instead")
    _add_tolerances(check)
    add_json_flag(check)


def _add_tolerances(parser: argparse.ArgumentParser) -> None:
    thresholds = ", ".join(f"{precision} {t}" for precision, (t, _) in TOLERANCES.items())
    diffs = ", ".join(f"{precision} {d}" for precision, (_, d) in TOLERANCES.items())
    parser.add_argument(
        "--threshold", type=float, help=f"minimum greedy agreement in [0, 1] (default {thresholds})"
    )
    parser.add_argument(
        "--max-diff", type=float, help=f"largest tolerated |logit difference| (default {diffs})"
    )


def _gguf(args: argparse.Namespace) -> int:
    if args.lora:
        result = export_lora(args.model, outtype=args.outtype, out=args.out)
    else:
        result = export(args.model, outtype=args.outtype, out=args.out)
    return print_result(
        args,
        result,
        lambda: print(f"wrote {result['path']} ({result['bytes'] / 1e6:.1f} MB, {result['outtype']})"),
    )


def _onnx(args: argparse.Namespace) -> int:
    result, console = _with_status(
        "exporting to ONNX",
        lambda step: export_onnx(
            args.model,
            quantize=args.quantize,
            out=args.out,
            force=args.force,
            check=not args.no_check,
            on_step=step,
            **_tolerance_args(args),
        ),
    )
    print_result(args, result, lambda: _print_onnx(result))
    parity = result.get("parity")
    return 0 if parity is None else _parity_verdict(parity, console)


def _onnx_check(args: argparse.Namespace) -> int:
    report, console = _with_status(
        "checking the ONNX export",
        lambda step: check_export(
            args.folder, reference=args.reference, on_step=step, **_tolerance_args(args)
        ),
    )
    parity = report.to_dict()
    print_result(args, parity, lambda: _print_prompts(parity))
    return _parity_verdict(parity, console)


def _tolerance_args(args: argparse.Namespace) -> dict[str, float | None]:
    return {"threshold": args.threshold, "max_diff": args.max_diff}


def _with_status(label: str, work: Callable[[Callable[[str], None]], Any]) -> tuple[Any, Any]:
    """(what `work(on_step)` returns, the stderr console), its steps shown on a status line."""
    from rich.console import Console

    console = Console(stderr=True)
    with console.status(label) as status:
        return work(lambda message: status.update(message)), console


def _print_onnx(result: dict[str, Any]) -> None:
    print(
        f"wrote {result['path']} ({result['bytes'] / 1e6:.1f} MB, {result['precision']}, "
        f"{result['kv_cache_inputs']} KV-cache inputs)"
    )
    if "parity" in result:
        _print_prompts(result["parity"])


def _print_prompts(parity: dict[str, Any]) -> None:
    for i, p in enumerate(parity["prompts"], start=1):
        print(
            f"prompt {i}: greedy agreement {p['greedy_agreement']:.3f}  max logit diff "
            f"{p['max_logit_diff']:.2e}  prefix agreement {p['prefix_agreement']:.2f}"
        )


def _parity_verdict(parity: dict[str, Any], console: Any) -> int:
    """One line on stderr (per-prompt numbers are in --json); 1 when the check failed."""
    numbers = (
        f"greedy agreement {parity['greedy_agreement']:.3f} (threshold {parity['threshold']}), "
        f"max logit diff {parity['max_logit_diff']:.3g} (tolerance {parity['max_diff']}), "
        f"prefix agreement {parity['prefix_agreement']:.2f}, ONNX Runtime decode "
        f"{parity['decode_tokens_per_s']} tok/s"
    )
    if not parity["ok"]:
        console.print(f"[bold red]MISMATCH: {numbers}[/]")
        return 1
    console.print(f"[green]parity OK: {numbers}[/]")
    return 0
