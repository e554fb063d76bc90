"""`lmf export gguf`: write a store model, model directory or fine-tuning run to a GGUF file."""

from __future__ import annotations

import argparse
from typing import Any

from lmfoundry.cli.common import add_command_group, add_json_flag, add_subcommand, print_result
from lmfoundry.finetune.export.gguf import export
from lmfoundry.finetune.export.gguf_lora import export_lora

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
