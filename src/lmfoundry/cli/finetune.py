"""`lmf finetune CONFIG.yaml [key=value ...]`: train a model as a config says."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from lmfoundry.cli.common import add_json_flag, print_result
from lmfoundry.cli.tracking import add_track_flag, track_cli_run, tracking_enabled
from lmfoundry.cli.tracking_steps import StepTracker
from lmfoundry.config import to_dict
from lmfoundry.finetune.config import load_finetune_config
from lmfoundry.finetune.run import run_finetune

_LOOP_STAGES = ("sft", "pretrain", "continued-pretraining")
"""Stages trained by `finetune.train.loop`, whose callbacks get every step (see `_step_tracker`)."""
_SHOWN = {
    "sft": (
        "train_loss",
        "eval_loss",
        "tokens_per_s",
        "peak_rss_bytes",
        "estimated_peak_bytes",
        "adapter_path",
    ),
    "reward": (
        "train_loss",
        "eval_loss",
        "heldout_before",
        "heldout_after",
        "peak_rss_bytes",
        "adapter_path",
    ),
    "dpo": ("train_loss", "eval_loss", "heldout_before", "heldout_after", "peak_rss_bytes", "adapter_path"),
    "ppo": ("steps", "eval_before", "eval_after", "peak_rss_bytes", "adapter_path"),
    **dict.fromkeys(
        ("pretrain", "continued-pretraining"),
        (
            "train_loss",
            "initial_eval_loss",
            "eval_loss",
            "eval_perplexity",
            "tokens_per_s",
            "mfu",
            "adapter_path",
        ),
    ),
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune, align or pretrain a model (SFT: full, LoRA, QLoRA, ...; reward, DPO, PPO; pretrain)",
        description=(
            "Fine-tune a model from a YAML config (see configs/finetune/). `stage:` picks "
            "supervised fine-tuning (sft, default) or an alignment stage: reward (scalar-head "
            "reward model, pairwise loss), dpo, or ppo (needs align.reward_model); or a raw-text stage: "
            "pretrain (a new Llama and its BPE tokenizer) or continued-pretraining (configs/pretrain/). "
            "Overrides use dotted "
            "keys, e.g. `training.max_steps=20 method.options.r=16 output_dir=runs/try`. The run "
            "folder gets resolved_config.yaml, metrics.jsonl, loss_curve.png, a resumable "
            "checkpoint/, the adapter (or model/ for full fine-tuning) and summary.json. Ctrl-C "
            "saves a checkpoint; --resume continues exactly where it stopped. Several devices: "
            "`accelerate launch -m lmfoundry.cli.main finetune CONFIG.yaml` (or torchrun) trains "
            "data-parallel through accelerate (training.accelerate: auto; docs/scaling.md)."
        ),
    )
    parser.add_argument("config", help="fine-tuning YAML file")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in output_dir from its checkpoint"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(parser)
    add_track_flag(parser)
    parser.set_defaults(handler=_finetune)


def _finetune(args: argparse.Namespace) -> int:
    config = load_finetune_config(args.config, args.overrides)
    tracker = _step_tracker(args, config)
    try:
        summary = run_finetune(
            config,
            resume=args.resume,
            progress=not (args.no_progress or args.json),
            callbacks=[tracker] if tracker else None,
        )
    except KeyboardInterrupt:
        if tracker:
            tracker.end("KILLED")
        print(
            f"lmf: interrupted; a checkpoint is in {config.output_dir}/checkpoint. Continue with:\n"
            f"  lmf finetune {args.config} {' '.join(args.overrides)} --resume".rstrip(),
            file=sys.stderr,
        )
        return 130
    except BaseException:
        if tracker:
            tracker.end("FAILED")
        raise
    if summary.get("process_index"):  # a non-main process of `accelerate launch`: main reports
        return 0
    if tracker is None or not tracker.failed:  # a failed tracker has warned once: the run is untracked
        _track(args, config, summary, tracker.run_id if tracker else None)
    else:
        summary["run_id"] = None
    return print_result(args, summary, lambda: _print_summary(summary, config.stage))


def _kind(config: Any) -> str:
    return f"finetune-{config.stage}" if config.stage != "sft" else "finetune"


def _step_tracker(args: argparse.Namespace, config: Any) -> StepTracker | None:
    """The callback that streams step metrics to MLflow, for the stages that run our own loop
    (the trl-backed stages and ppo take no loop callbacks; their run is logged at the end)."""
    if config.stage not in _LOOP_STAGES or not tracking_enabled(args):
        return None
    if importlib.util.find_spec("mlflow") is None:  # track_cli_run prints the note at the end
        return None
    return StepTracker(_kind(config), run_name=f"cli:{Path(config.output_dir).expanduser().name}")


def _print_summary(summary: dict[str, Any], stage: str) -> None:
    for key in _SHOWN[stage]:
        print(f"{key:<22} {_fmt(summary.get(key))}")
    if summary.get("estimate_note"):
        print(f"{'':<22} ({summary['estimate_note']})")
    print(f"{'run folder':<22} {summary['run_dir']}")


def _track(args: argparse.Namespace, config: Any, summary: dict[str, Any], run_id: str | None) -> None:
    """Record the run in MLflow (unless --no-track): config as params, summary numbers as metrics,
    into `run_id` when the step metrics started one."""
    run_dir = Path(summary["run_dir"])
    names = ("resolved_config.yaml", "summary.json", "metrics.jsonl", "loss_curve.png", "curves.png")
    artifacts = [run_dir / name for name in names if (run_dir / name).is_file()]
    summary["run_id"] = track_cli_run(
        args,
        _kind(config),
        to_dict(config),
        summary,
        artifacts,
        run_name=f"cli:{run_dir.name}",
        run_id=run_id,
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return "  ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return "n/a" if value is None else str(value)
