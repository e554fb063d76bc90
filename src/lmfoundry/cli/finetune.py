"""`lmf finetune CONFIG.yaml [key=value ...]`: train a model as a config says."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lmfoundry.cli.common import add_json_flag, print_json

_SHOWN = ("train_loss", "eval_loss", "tokens_per_s", "peak_rss_bytes", "estimated_peak_bytes", "adapter_path")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a model (full, LoRA, QLoRA, AdaLoRA, IA3, prefix/prompt tuning, ...)",
        description=(
            "Fine-tune a model from a YAML config (see configs/finetune/). Overrides use dotted "
            "keys, e.g. `training.max_steps=20 method.options.r=16 output_dir=runs/try`. The run "
            "folder gets resolved_config.yaml, metrics.jsonl, loss_curve.png, a resumable "
            "checkpoint/, the adapter (or model/ for full fine-tuning) and summary.json. Ctrl-C "
            "saves a checkpoint; --resume continues exactly where it stopped."
        ),
    )
    parser.add_argument("config", help="fine-tuning YAML file")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in output_dir from its checkpoint"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(parser)
    parser.set_defaults(handler=_finetune)


def _finetune(args: argparse.Namespace) -> int:
    from lmfoundry.finetune.config import load_finetune_config
    from lmfoundry.finetune.sft import run_finetune

    config = load_finetune_config(args.config, args.overrides)
    try:
        summary = run_finetune(config, resume=args.resume, progress=not (args.no_progress or args.json))
    except KeyboardInterrupt:
        print(
            f"lmf: interrupted; a checkpoint is in {config.output_dir}/checkpoint. Continue with:\n"
            f"  lmf finetune {args.config} {' '.join(args.overrides)} --resume".rstrip(),
            file=sys.stderr,
        )
        return 130
    if args.json:
        print_json(summary)
        return 0
    for key in _SHOWN:
        print(f"{key:<22} {_fmt(summary[key])}")
    if summary.get("estimate_note"):
        print(f"{'':<22} ({summary['estimate_note']})")
    print(f"{'run folder':<22} {summary['run_dir']}")
    return 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "n/a" if value is None else str(value)
