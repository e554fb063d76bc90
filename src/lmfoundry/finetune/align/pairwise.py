"""The `reward` and `dpo` stages behind `lmf finetune`: trl's trainers on preference pairs, with a
held-out check before and after training.

Same run folder as supervised fine-tuning (`train/stage.py`): `metrics.jsonl` (loss, reward,
margin, accuracy per step), `curves.png`, `checkpoint/` for `--resume`, the adapter (or `model/`)
with `lmf_adapter.json` naming the stage, and `summary.json`. `ppo_loop.py` is the third
alignment stage (trl 1.x no longer ships a PPO trainer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.align.dpo import preference_check, train_dpo
from lmfoundry.finetune.align.reward import pair_accuracy, train_reward
from lmfoundry.finetune.config import DataConfig
from lmfoundry.finetune.data.preferences import build_pairs
from lmfoundry.finetune.data.records import train_validation_records
from lmfoundry.finetune.train import trl_stage
from lmfoundry.finetune.train.artifacts import (
    ArtifactInfo,
    base_reference,
    load_starting_point,
    save_artifact,
)
from lmfoundry.finetune.train.callbacks import METRICS_FILE, plot_stage_curves
from lmfoundry.finetune.train.methods import peft_config, trainable_parameters
from lmfoundry.finetune.train.reward_head import as_reward_model
from lmfoundry.finetune.train.stage import StageJob
from lmfoundry.finetune.train.trl_stage import TrlSetup

# metrics.jsonl keys shown in the progress bar, and the panels of curves.png, per stage.
SHOWN = {
    "reward": ("loss", "accuracy", "margin"),
    "dpo": ("loss", "rewards_margins", "rewards_accuracies"),
}
PANELS = {
    "reward": [("pairwise loss", ["loss", "eval_loss"]), ("pairs ranked right", ["accuracy", "margin"])],
    "dpo": [
        ("DPO loss", ["loss", "eval_loss"]),
        ("implicit reward", ["rewards_chosen", "rewards_rejected", "rewards_margins", "rewards_accuracies"]),
    ],
}


@dataclass
class Pairs:
    """The tokenized preference pairs of a stage, and the held-out ones checked before and after."""

    train: list[Any]
    eval: list[Any]
    heldout: list[Any]
    reports: dict[str, Any]


Phase = Callable[[Any, Any, Pairs, int, TrlSetup], tuple[Any, dict[str, Any], dict[str, Any]]]
"""(model, tokenizer, pairs, total steps, setup) -> (trainer, held-out before, held-out after)."""


def load_pairs(cfg: DataConfig, tokenizer: Any, heldout: int) -> Pairs:
    """Train and validation pairs of the config's preference data, with truncation reports."""
    train_records, eval_records = train_validation_records(cfg)
    train, train_report = build_pairs(train_records, tokenizer, cfg.template, cfg.max_length)
    evals, eval_report = build_pairs(eval_records, tokenizer, cfg.template, cfg.max_length, warn=False)
    if not train:
        raise LmfError(f"no preference pairs of {cfg.path} fit data.max_length {cfg.max_length}")
    return Pairs(
        train, evals, evals[:heldout], {"train": train_report.as_dict(), "eval": eval_report.as_dict()}
    )


def run_reward(job: StageJob) -> dict[str, Any]:
    """The `reward` stage runner: a scalar-head model trained on pairs (trl's RewardTrainer)."""
    return _run_pairwise(job, _reward_phase)


def run_dpo(job: StageJob) -> dict[str, Any]:
    """The `dpo` stage runner: direct preference optimisation (trl's DPOTrainer)."""
    return _run_pairwise(job, _dpo_phase)


def _run_pairwise(job: StageJob, phase: Phase) -> dict[str, Any]:
    config, t = job.config, job.config.training
    model, tokenizer = load_starting_point(config.model.name)
    pairs = load_pairs(config.data, tokenizer, config.align.eval_pairs)
    steps = t.max_steps or max(1, -(-len(pairs.train) * t.epochs // (t.batch_size * t.grad_accumulation)))
    metrics_path = job.run_dir / METRICS_FILE
    if job.resume:
        trl_stage.drop_metrics_after_checkpoint(metrics_path, job.run_dir)
    callback = trl_stage.trainer_callback(metrics_path, steps, job.progress, SHOWN[config.stage])
    setup = TrlSetup(config, job.run_dir, job.resume, None, [callback, *job.callbacks])
    trainer, before, after = phase(model, tokenizer, pairs, steps, setup)
    info = ArtifactInfo(
        base_reference(config.model.name),
        config.method.name,
        stage=config.stage,
        template=config.data.template,
    )
    artifact = save_artifact(trainer.model, tokenizer, job.run_dir, info)
    trained, total = trainable_parameters(trainer.model)
    curves = plot_stage_curves(job.run_dir, PANELS[config.stage])
    return {
        "steps": trainer.state.global_step,
        "train_loss": _last(trainer.state.log_history, "loss"),
        "eval_loss": _last(trainer.state.log_history, "eval_loss"),
        "heldout_pairs": len(pairs.heldout),
        "heldout_before": before,
        "heldout_after": after,
        "trainable_params": trained,
        "total_params": total,
        "adapter_path": str(artifact),
        "data": pairs.reports,
        "curves": curves,
    }


def _reward_phase(
    model: Any, tokenizer: Any, pairs: Pairs, steps: int, setup: TrlSetup
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    model = as_reward_model(model, tokenizer, setup.config.training.seed)
    pad = model.config.pad_token_id
    before = pair_accuracy(model, pairs.heldout, pad)
    setup.peft_config = peft_config(setup.config.method, model, steps, "SEQ_CLS")
    trainer = train_reward(model, tokenizer, pairs.train, pairs.eval, setup)
    return trainer, before, pair_accuracy(trainer.model, pairs.heldout, pad)


def _dpo_phase(
    model: Any, tokenizer: Any, pairs: Pairs, steps: int, setup: TrlSetup
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    beta = setup.config.align.beta
    start = preference_check(model, pairs.heldout, beta)
    reference = start.pop("logps", None)
    before = {
        **start,
        "implicit_accuracy": 0.0 if pairs.heldout else None,
        "implicit_margin": 0.0 if pairs.heldout else None,
    }
    setup.peft_config = peft_config(setup.config.method, model, steps)
    trainer = train_dpo(model, tokenizer, pairs.train, pairs.eval, setup)
    after = preference_check(trainer.model, pairs.heldout, beta, reference)
    after.pop("logps", None)
    return trainer, before, after


def _last(history: list[dict[str, Any]], key: str) -> float | None:
    values = [h[key] for h in history if isinstance(h.get(key), int | float)]
    return values[-1] if values else None
