"""Run a trl trainer (reward model, DPO) with lmfoundry's run-folder conventions.

trl's trainers bring the algorithms; this module maps our `TrainingConfig` onto their
arguments and makes them behave like `lmf finetune` does for SFT: the same progress bar, a
`metrics.jsonl` line per logged step and evaluation (keys with "/" turned into "_"),
checkpoints inside `checkpoint/`, `--resume` from the latest one, and Ctrl-C saving one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.config import FinetuneConfig, TrainingConfig
from lmfoundry.finetune.train.callbacks import (
    CHECKPOINT_DIR,
    StageProgress,
    append_metrics,
    metrics_line,
    truncate_metrics,
)

_SCHEDULERS = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


@dataclass
class TrlSetup:
    """What a trl-backed stage's trainer needs besides model, tokenizer and data."""

    config: FinetuneConfig
    run_dir: Path
    resume: bool
    peft_config: Any
    callbacks: list[Any]


def trainer_arguments(cls: Any, config: TrainingConfig, run_dir: Path, has_eval: bool, **extra: Any) -> Any:
    """An instance of trl's `cls` (RewardConfig, DPOConfig) for our training options."""
    eval_every = config.eval_every if has_eval and config.eval_every > 0 else 0
    return cls(
        output_dir=str(run_dir / CHECKPOINT_DIR),
        learning_rate=config.lr,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accumulation,
        eval_strategy="steps" if eval_every else "no",
        eval_steps=eval_every or None,
        save_strategy="steps" if config.save_every > 0 else "no",
        save_steps=config.save_every or 500,
        save_total_limit=1,
        logging_steps=1,
        seed=config.seed,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type=_SCHEDULERS[config.scheduler],
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm or 0.0,
        activation_checkpointing=config.activation_checkpointing,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        log_level="warning",
        dataloader_num_workers=0,
        **extra,
    )


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest `checkpoint/checkpoint-N` folder trl/transformers wrote, if any."""
    folders = [p for p in (run_dir / CHECKPOINT_DIR).glob("checkpoint-*") if p.is_dir()]
    return max(folders, key=lambda p: int(p.name.rsplit("-", 1)[-1]), default=None)


def metrics_record(logs: dict[str, Any], step: int) -> dict[str, Any] | None:
    """A trainer's log dict as one metrics.jsonl record (None for its end-of-run summary)."""
    if not logs or "train_runtime" in logs:
        return None
    kind = "eval" if any(k.startswith("eval_") for k in logs) else "train"
    record: dict[str, Any] = {"kind": kind, "step": step}
    for key, value in logs.items():
        if isinstance(value, int | float):
            name = (key.removeprefix("eval_") if kind == "eval" else key).replace("/", "_")
            record[name if kind == "train" or name != "loss" else "eval_loss"] = value
    return record


def trainer_callback(metrics_path: Path, total_steps: int, progress: bool, shown: tuple[str, ...]) -> Any:
    """A transformers TrainerCallback writing metrics.jsonl and driving the stage's progress bar."""
    from transformers import TrainerCallback

    class _RunFolderCallback(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.bar = StageProgress("align", total_steps, enabled=progress)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.bar.update(state.global_step, total=state.max_steps or total_steps)
            self.bar.__enter__()

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.bar.__exit__()

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
        ) -> None:
            record = metrics_record(logs or {}, state.global_step)
            if record is not None:
                append_metrics(metrics_path, record)
                self.bar.update(state.global_step, metrics_line(record, shown))

    return _RunFolderCallback()


def fit(trainer_class: Any, setup: TrlSetup, **trainer_kwargs: Any) -> Any:
    """Build `trainer_class(**trainer_kwargs)` with our callbacks and peft config, train it
    (resuming, quietly, saving a checkpoint on Ctrl-C) and return the trainer."""
    trainer = trainer_class(peft_config=setup.peft_config, callbacks=setup.callbacks, **trainer_kwargs)
    quiet(trainer)
    train(trainer, setup.run_dir, setup.resume)
    return trainer


def quiet(trainer: Any) -> Any:
    """Drop the trainer's own stdout printer and tqdm bar (we draw one bar and write JSON lines)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def train(trainer: Any, run_dir: Path, resume: bool) -> Any:
    """trainer.train(), resuming from the latest checkpoint; Ctrl-C saves one and re-raises."""
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        raise LmfError(f"nothing to resume: {run_dir / CHECKPOINT_DIR} holds no checkpoint-N folder")
    try:
        return trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except KeyboardInterrupt:
        print(f"interrupted: saving a checkpoint at step {trainer.state.global_step}", file=sys.stderr)
        trainer._save_checkpoint(trainer.model, trial=None)
        raise


def drop_metrics_after_checkpoint(path: Path, run_dir: Path) -> None:
    """A resumed run rewrites the records after its latest checkpoint's step."""
    checkpoint = latest_checkpoint(run_dir)
    truncate_metrics(path, int(checkpoint.name.rsplit("-", 1)[-1]) if checkpoint else 0)
