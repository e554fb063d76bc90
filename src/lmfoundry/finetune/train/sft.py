"""Supervised fine-tuning, the `sft` stage: config -> data -> model + method -> loop -> run folder.

Besides what every stage writes (`stage.py`), the run folder gets `loss_curve.png`,
`checkpoint/` (resumable, exact), `adapter/` (or `model/` for full fine-tuning), and the summary
adds train/eval loss, tokens/s, the planner's peak-RSS estimate next to the measured peak, and
the tokenize reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.config import DataConfig, FinetuneConfig
from lmfoundry.finetune.data.records import train_validation_records
from lmfoundry.finetune.data.tokenize import build_dataset
from lmfoundry.finetune.train import loop as train_loop
from lmfoundry.finetune.train.artifacts import ArtifactInfo, save_artifact
from lmfoundry.finetune.train.callbacks import (
    CHECKPOINT_DIR,
    METRICS_FILE,
    MetricsFile,
    ProgressBar,
    plot_loss_curve,
    read_metrics,
    truncate_metrics,
)
from lmfoundry.finetune.train.distributed import make_ranks
from lmfoundry.finetune.train.loss import hf_model
from lmfoundry.finetune.train.methods import adalora_orthogonal_loss, prepare_model, trainable_parameters
from lmfoundry.finetune.train.stage import StageJob, run_stage
from lmfoundry.memory.planner import Workload, estimate, model_facts
from lmfoundry.models.load import load_hf_model

PLOT_FILE = "loss_curve.png"


def load_data(cfg: DataConfig, tokenizer: Any) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Tokenized (train, eval) examples with prompt tokens masked, and the tokenize reports."""
    train_records, eval_records = train_validation_records(cfg)
    train, train_report = build_dataset(train_records, tokenizer, cfg.template, cfg.max_length, cfg.packing)
    evals, eval_report = build_dataset(
        eval_records, tokenizer, cfg.template, cfg.max_length, cfg.packing, warn=False
    )
    if not train:
        raise LmfError(
            f"no training examples left after tokenizing {cfg.path} (max_length {cfg.max_length} too small?)"
        )
    return train, evals, {"train": train_report.as_dict(), "eval": eval_report.as_dict()}


def planner_estimate(config: FinetuneConfig) -> tuple[int | None, str | None]:
    """(bytes, note): the memory planner's peak-RSS estimate for this run's shape.

    The planner models full, LoRA and QLoRA (HF-style loss over all positions); for the other
    methods the LoRA estimate is the nearest stand-in, and the note says so.
    """
    name, t = config.method.name, config.training
    mode = name if name in ("full", "lora", "qlora") else "lora"
    workload = Workload(
        mode=mode,
        quant=config.method.quant.method if name == "qlora" else None,
        seq_len=config.data.max_length,
        batch=t.batch_size,
        lora_rank=int(config.method.options.get("r", 8)) if mode != "full" else 8,
    )
    result = estimate(model_facts(config.model.name), workload)
    note = None if mode == name else f"planner has no {name} model; LoRA estimate shown"
    return result.total_bytes, note


def enable_activation_checkpointing(model: Any) -> None:
    """Recompute each decoder layer in backward: activations shrink to the layer inputs."""
    base = hf_model(model)
    base.config.use_cache = False
    base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def _adalora_hooks(loop: Any, method: str) -> None:
    if method != "adalora":
        return
    loop.extra_loss = adalora_orthogonal_loss
    loop.after_backward = lambda model, step: model.base_model.update_and_allocate(step)


@dataclass
class FinetuneResult:
    summary: dict[str, Any]
    model: Any
    """The trained model (peft-wrapped unless full fine-tuning), in memory."""
    tokenizer: Any


def finetune(
    config: FinetuneConfig, *, resume: bool = False, progress: bool = True, callbacks: list[Any] | None = None
) -> FinetuneResult:
    """Run the sft stage and return its summary with the trained model and tokenizer."""
    if config.stage != "sft":
        raise LmfError(f"finetune() runs stage sft; use run_finetune() for stage {config.stage}")
    summary, job = run_stage(config, run_sft, resume=resume, progress=progress, callbacks=callbacks)
    return FinetuneResult(summary, job.model, job.tokenizer)


def run_sft(job: StageJob) -> dict[str, Any]:
    """The sft stage runner: train with our own loop, save the artifact, return the summary fields."""
    import torch

    config, t, run_dir = job.config, job.config.training, job.run_dir
    ranks = make_ranks(t.accelerate)
    ranks.wait()
    model, tokenizer = load_hf_model(config.model.name)
    train_set, eval_set, reports = load_data(config.data, tokenizer)
    model = prepare_model(model, config.method, train_loop.total_steps(len(train_set), t), t.seed)
    if t.activation_checkpointing:
        enable_activation_checkpointing(model)
    loop = train_loop.make_loop(model, train_set, eval_set, t, tokenizer.pad_token_id, ranks=ranks)
    _adalora_hooks(loop, config.method.name)
    checkpoint = run_dir / CHECKPOINT_DIR
    if job.resume:
        train_loop.load_checkpoint(loop, checkpoint)
        if ranks.is_main:
            truncate_metrics(run_dir / METRICS_FILE, loop.state.step)
    else:
        torch.manual_seed(t.seed)
    with ProgressBar(loop.state.total_steps, loop.state.step, enabled=job.progress and ranks.is_main) as bar:
        if ranks.is_main:  # the other processes of a launched run write nothing
            loop.callbacks = [MetricsFile(run_dir / METRICS_FILE), bar, *job.callbacks]
        state = train_loop.fit(loop, checkpoint)
    ranks.wait()
    full_state = ranks.full_state_dict(model)  # FSDP: gathered from every process's shard
    job.model, job.tokenizer, job.is_main = model.eval(), tokenizer, ranks.is_main
    if not ranks.is_main:
        return {"process_index": ranks.rank, "steps": state.step}
    quant = asdict(config.method.quant) if config.method.name == "qlora" else {}
    info = ArtifactInfo(config.model.name, config.method.name, quant, template=config.data.template)
    artifact = save_artifact(model, tokenizer, run_dir, info, full_state)
    return {
        **_loop_summary(state, ranks.world),
        **_run_facts(config, model, run_dir),
        "adapter_path": str(artifact),
        "data": reports,
    }


def _loop_summary(state: train_loop.TrainState, processes: int) -> dict[str, Any]:
    """What the loop measured: steps, losses, tokens and their rate."""
    return {
        "steps": state.step,
        "processes": processes,
        "total_steps": state.total_steps,
        "stopped_early": state.stopped_early,
        "final_step_loss": state.last_loss,
        "eval_loss": state.eval_loss,
        "initial_eval_loss": state.initial_eval_loss,
        "best_eval_loss": state.best_eval_loss,
        "tokens": state.tokens,
        "train_seconds": round(state.train_seconds, 3),
        "tokens_per_s": state.tokens / state.train_seconds if state.train_seconds else 0.0,
    }


def _run_facts(config: FinetuneConfig, model: Any, run_dir: Any) -> dict[str, Any]:
    """Mean of the last 10 train losses, the loss curve, parameter counts and the planner's estimate."""
    metrics = read_metrics(run_dir / METRICS_FILE)
    plot = plot_loss_curve(metrics, run_dir / PLOT_FILE)
    trained, total = trainable_parameters(model)
    estimated, note = planner_estimate(config)
    window = [m["loss"] for m in metrics if m.get("kind") == "train"][-10:]
    return {
        "train_loss": sum(window) / len(window) if window else None,
        "trainable_params": trained,
        "total_params": total,
        "estimated_peak_bytes": estimated,
        "estimate_note": note,
        "loss_curve": str(plot) if plot else None,
    }
