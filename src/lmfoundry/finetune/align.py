"""The alignment stages behind `lmf finetune` (`stage: reward | dpo | ppo`), end to end.

Same run folder as supervised fine-tuning: `resolved_config.yaml`, `metrics.jsonl` (loss,
reward, margin, accuracy, KL per step), PNG curves, `checkpoint/` for `--resume`, the adapter
(or `model/`) with `lmf_adapter.json` naming the stage, and `summary.json`. reward and dpo run
trl's trainers; ppo runs `ppo.py` (trl 1.x no longer ships a PPO trainer).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.finetune.config import DataConfig, FinetuneConfig
from lmfoundry.fsutil import atomic_write_text

PLOT_FILE = "curves.png"
# metrics.jsonl keys shown in the progress bar and plotted, per stage.
SHOWN = {
    "reward": ("loss", "accuracy", "margin"),
    "dpo": ("loss", "rewards_margins", "rewards_accuracies"),
    "ppo": ("reward", "kl", "loss"),
}
PANELS = {
    "reward": [("pairwise loss", ["loss", "eval_loss"]), ("pairs ranked right", ["accuracy", "margin"])],
    "dpo": [
        ("DPO loss", ["loss", "eval_loss"]),
        ("implicit reward", ["rewards_chosen", "rewards_rejected", "rewards_margins", "rewards_accuracies"]),
    ],
    "ppo": [("reward", ["reward", "score"]), ("KL to reference", ["kl"]), ("losses", ["pg_loss", "vf_loss"])],
}


@dataclass
class StageSetup:
    """What a stage's trainer needs besides model, tokenizer and data."""

    config: FinetuneConfig
    run_dir: Path
    resume: bool
    peft_config: Any
    callbacks: list[Any]


def load_pairs(cfg: DataConfig, tokenizer: Any) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """(train pairs, validation pairs, truncation reports) of the config's preference data."""
    from lmfoundry.errors import LmfError
    from lmfoundry.finetune.preference_data import build_pairs
    from lmfoundry.finetune.sft import train_validation_records

    train_records, eval_records = train_validation_records(cfg)
    train, train_report = build_pairs(train_records, tokenizer, cfg.template, cfg.max_length)
    evals, eval_report = build_pairs(eval_records, tokenizer, cfg.template, cfg.max_length, warn=False)
    if not train:
        raise LmfError(f"no preference pairs of {cfg.path} fit data.max_length {cfg.max_length}")
    return train, evals, {"train": train_report.as_dict(), "eval": eval_report.as_dict()}


def run_alignment(
    config: FinetuneConfig, *, resume: bool = False, progress: bool = True, callbacks: list[Any] | None = None
) -> dict[str, Any]:
    """Run the reward, dpo or ppo stage of `config`; return (and write) its summary.

    `callbacks` are extra transformers TrainerCallbacks for the reward and dpo trainers.
    """
    import torch

    from lmfoundry.finetune.sft import prepare_run_dir
    from lmfoundry.models.allocator import use_lean_allocator

    if config.training.threads:
        torch.set_num_threads(config.training.threads)
    if config.training.lean_allocator:
        use_lean_allocator()
    run_dir = prepare_run_dir(config, resume)
    started = time.perf_counter()
    if config.stage == "ppo":
        from lmfoundry.finetune.ppo_run import run_ppo

        summary = run_ppo(config, run_dir, resume=resume, progress=progress)
    else:
        summary = _run_pairwise(config, run_dir, resume, progress, callbacks or [])
    return finish(config, run_dir, summary, started)


def _run_pairwise(
    config: FinetuneConfig, run_dir: Path, resume: bool, progress: bool, extra_callbacks: list[Any]
) -> dict[str, Any]:
    """reward and dpo: trl trainers on preference pairs, with a held-out check before and after."""
    from lmfoundry.finetune import hf_glue
    from lmfoundry.finetune.artifacts import ArtifactInfo, base_reference, load_starting_point, save_artifact
    from lmfoundry.finetune.methods import peft_config, trainable_parameters

    model, tokenizer = load_starting_point(config.model.name)
    train_pairs, eval_pairs, reports = load_pairs(config.data, tokenizer)
    heldout = eval_pairs[: config.align.eval_pairs]
    t = config.training
    steps = t.max_steps or max(1, -(-len(train_pairs) * t.epochs // (t.batch_size * t.grad_accumulation)))
    metrics_path = run_dir / "metrics.jsonl"
    if resume:
        hf_glue.drop_metrics_after(metrics_path, hf_glue.checkpoint_step(hf_glue.latest_checkpoint(run_dir)))
    callback = hf_glue.trainer_callback(metrics_path, steps, progress, SHOWN[config.stage])
    if config.stage == "reward":
        from lmfoundry.finetune.reward import as_reward_model, pair_accuracy

        model = as_reward_model(model, tokenizer, t.seed)
        pad = model.config.pad_token_id
        before = pair_accuracy(model, heldout, pad)
        peft = peft_config(config.method, model, steps, "SEQ_CLS")
        setup = StageSetup(config, run_dir, resume, peft, [callback, *extra_callbacks])
        trainer = _train_reward(model, tokenizer, train_pairs, eval_pairs, setup)
        after = pair_accuracy(trainer.model, heldout, pad)
    else:
        from lmfoundry.finetune.dpo import preference_check, train_dpo

        start = preference_check(model, heldout, config.align.beta)
        reference = start.pop("logps", None)
        before = {
            **start,
            "implicit_accuracy": 0.0 if heldout else None,
            "implicit_margin": 0.0 if heldout else None,
        }
        setup = StageSetup(
            config, run_dir, resume, peft_config(config.method, model, steps), [callback, *extra_callbacks]
        )
        trainer = train_dpo(model, tokenizer, train_pairs, eval_pairs, setup)
        after = preference_check(trainer.model, heldout, config.align.beta, reference)
        after.pop("logps", None)
    base = base_reference(config.model.name)
    info = ArtifactInfo(base, config.method.name, stage=config.stage, template=config.data.template)
    artifact = save_artifact(trainer.model, tokenizer, run_dir, info)
    trained, total = trainable_parameters(trainer.model)
    return {
        "steps": trainer.state.global_step,
        "train_loss": _last(trainer.state.log_history, "loss"),
        "eval_loss": _last(trainer.state.log_history, "eval_loss"),
        "heldout_pairs": len(heldout),
        "heldout_before": before,
        "heldout_after": after,
        "trainable_params": trained,
        "total_params": total,
        "adapter_path": str(artifact),
        "data": reports,
    }


def _train_reward(
    model: Any, tokenizer: Any, train_pairs: list[Any], eval_pairs: list[Any], setup: StageSetup
) -> Any:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from lmfoundry.finetune import hf_glue

    def rows(pairs: list[Any]) -> Any:
        return Dataset.from_list(
            [{"chosen_ids": p.sequence("chosen"), "rejected_ids": p.sequence("rejected")} for p in pairs]
        )

    args = hf_glue.trainer_arguments(
        RewardConfig, setup.config.training, setup.run_dir, bool(eval_pairs), max_length=None
    )
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=rows(train_pairs),
        eval_dataset=rows(eval_pairs) if eval_pairs else None,
        processing_class=tokenizer,
        peft_config=setup.peft_config,
        callbacks=setup.callbacks,
    )
    hf_glue.quiet(trainer)
    hf_glue.train(trainer, setup.run_dir, setup.resume)
    return trainer


def _last(history: list[dict[str, Any]], key: str) -> float | None:
    values = [h[key] for h in history if isinstance(h.get(key), int | float)]
    return values[-1] if values else None


def finish(config: FinetuneConfig, run_dir: Path, summary: dict[str, Any], started: float) -> dict[str, Any]:
    """Add the common fields, plot the curves and write summary.json."""
    from lmfoundry.finetune.callbacks import plot_panels, read_metrics
    from lmfoundry.models.memory_measure import peak_rss_bytes

    metrics = read_metrics(run_dir / "metrics.jsonl")
    plot = plot_panels(metrics, PANELS[config.stage], run_dir / PLOT_FILE)
    summary = {
        "run_dir": str(run_dir),
        "stage": config.stage,
        "method": config.method.name,
        **summary,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "peak_rss_bytes": peak_rss_bytes(),
        "curves": str(plot) if plot else None,
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary
