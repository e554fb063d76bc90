"""Supervised fine-tuning, end to end: config -> data -> model + method -> loop -> run folder.

`run_finetune(config)` is what `lmf finetune` calls. The run folder gets `resolved_config.yaml`,
`metrics.jsonl`, `loss_curve.png`, `checkpoint/` (resumable), `adapter/` (or `model/` for full
fine-tuning) and `summary.json` (train/eval loss, tokens/s, peak RSS next to the planner's
estimate, adapter path).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lmfoundry.config import to_dict, write_resolved
from lmfoundry.errors import LmfError
from lmfoundry.finetune.config import DataConfig, FinetuneConfig
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.paths import lmf_home

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss_curve.png"


def prepare_run_dir(config: FinetuneConfig, resume: bool) -> Path:
    """Create the run folder; refuse to overwrite a run, and to resume with a changed config."""
    import yaml

    run_dir = Path(config.output_dir).expanduser()
    resolved = run_dir / "resolved_config.yaml"
    if resume:
        from lmfoundry.finetune.hf_glue import latest_checkpoint

        if not (run_dir / "checkpoint" / "state.pt").is_file() and latest_checkpoint(run_dir) is None:
            raise LmfError(f"nothing to resume: {run_dir} has no checkpoint/")
        saved = yaml.safe_load(resolved.read_text(encoding="utf-8"))
        if saved != to_dict(config):
            raise LmfError(f"--resume needs the config the run started with; {resolved} differs")
        return run_dir
    if (run_dir / "checkpoint").exists() or (run_dir / SUMMARY_FILE).exists():
        raise LmfError(f"{run_dir} already holds a run: pass --resume, or set output_dir=NEW_FOLDER")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / METRICS_FILE).unlink(missing_ok=True)
    write_resolved(config, run_dir)
    return run_dir


def train_validation_records(cfg: DataConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, validation) records: the data's validation file, else a seeded split of train."""
    from lmfoundry.finetune.data import load_records, split_records
    from lmfoundry.finetune.synthetic import MAKERS

    path = Path(cfg.path).expanduser()
    bundled = lmf_home() / "data" / cfg.path
    if not path.exists() and cfg.path in MAKERS and not bundled.is_dir():
        print(f"making the bundled data set {cfg.path} (first use)", file=sys.stderr)
        MAKERS[cfg.path]()
    folder = path if path.is_dir() else bundled if not path.exists() else None
    has_validation = folder is not None and any(folder.glob("validation.*"))
    train = load_records(cfg.path, "train")
    if has_validation:
        validation = load_records(cfg.path, "validation")
    else:
        parts = split_records(train, cfg.split_seed, (1 - cfg.validation_fraction, cfg.validation_fraction))
        train, validation = parts["train"], parts["validation"]
    return train[: cfg.limit] if cfg.limit else train, validation[
        : cfg.eval_limit
    ] if cfg.eval_limit else validation


def load_data(cfg: DataConfig, tokenizer: Any) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Tokenized (train, eval) examples with prompt tokens masked, and the tokenize reports."""
    from lmfoundry.finetune.data import build_dataset

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
    from lmfoundry.models.memory import Workload, estimate, model_facts

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
    from lmfoundry.finetune.loss import hf_model

    base = hf_model(model)
    base.config.use_cache = False
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _adalora_hooks(loop: Any, method: str) -> None:
    if method != "adalora":
        return
    from lmfoundry.finetune.methods import adalora_orthogonal_loss

    loop.extra_loss = adalora_orthogonal_loss
    loop.after_backward = lambda model, step: model.base_model.update_and_allocate(step)


@dataclass
class FinetuneResult:
    summary: dict[str, Any]
    model: Any
    """The trained model (peft-wrapped unless full fine-tuning), in memory."""
    tokenizer: Any


def run_finetune(
    config: FinetuneConfig, *, resume: bool = False, progress: bool = True, callbacks: list[Any] | None = None
) -> dict[str, Any]:
    """Train as `config` says and return the summary (also written to summary.json).

    `config.stage` picks supervised fine-tuning or an alignment stage (reward / dpo / ppo).
    KeyboardInterrupt leaves a resumable checkpoint in the run folder and propagates.
    """
    if config.stage != "sft":
        from lmfoundry.finetune.align import run_alignment

        return run_alignment(config, resume=resume, progress=progress, callbacks=callbacks)
    return finetune(config, resume=resume, progress=progress, callbacks=callbacks).summary


def finetune(
    config: FinetuneConfig, *, resume: bool = False, progress: bool = True, callbacks: list[Any] | None = None
) -> FinetuneResult:
    """`run_finetune`, also returning the trained model and tokenizer."""
    import torch

    from lmfoundry.finetune import trainer
    from lmfoundry.finetune.artifacts import ArtifactInfo, save_artifact
    from lmfoundry.finetune.callbacks import (
        MetricsFile,
        ProgressBar,
        plot_loss_curve,
        read_metrics,
        truncate_metrics,
    )
    from lmfoundry.finetune.distributed import make_ranks
    from lmfoundry.finetune.methods import prepare_model, trainable_parameters
    from lmfoundry.models.allocator import use_lean_allocator
    from lmfoundry.models.load import load_hf_model
    from lmfoundry.models.memory_measure import peak_rss_bytes

    t = config.training
    if config.stage != "sft":
        raise LmfError(f"finetune() runs stage sft; use run_finetune() for stage {config.stage}")
    ranks = make_ranks(t.accelerate)
    run_dir = prepare_run_dir(config, resume)  # every process: identical, atomic writes
    ranks.wait()
    if t.threads:
        torch.set_num_threads(t.threads)
    if t.lean_allocator:
        use_lean_allocator()
    started = time.perf_counter()
    model, tokenizer = load_hf_model(config.model.name)
    train_set, eval_set, reports = load_data(config.data, tokenizer)
    steps = trainer.total_steps(len(train_set), t)
    model = prepare_model(model, config.method, steps, t.seed)
    if t.activation_checkpointing:
        enable_activation_checkpointing(model)
    loop = trainer.make_loop(model, train_set, eval_set, t, tokenizer.pad_token_id, ranks=ranks)
    _adalora_hooks(loop, config.method.name)
    checkpoint = run_dir / trainer.CHECKPOINT_DIR
    if resume:
        trainer.load_checkpoint(loop, checkpoint)
        if ranks.is_main:
            truncate_metrics(run_dir / METRICS_FILE, loop.state.step)
    else:
        torch.manual_seed(t.seed)
    with ProgressBar(loop.state.total_steps, loop.state.step, enabled=progress and ranks.is_main) as bar:
        if ranks.is_main:  # the other processes of a launched run write nothing
            loop.callbacks = [MetricsFile(run_dir / METRICS_FILE), bar, *(callbacks or [])]
        state = trainer.fit(loop, checkpoint)
    ranks.wait()
    if not ranks.is_main:
        summary = {"run_dir": str(run_dir), "process_index": ranks.rank, "steps": state.step}
        return FinetuneResult(summary, model.eval(), tokenizer)
    info = ArtifactInfo(
        config.model.name,
        config.method.name,
        asdict(config.method.quant) if config.method.name == "qlora" else {},
        template=config.data.template,
    )
    artifact = save_artifact(model, tokenizer, run_dir, info)
    metrics = read_metrics(run_dir / METRICS_FILE)
    plot = plot_loss_curve(metrics, run_dir / PLOT_FILE)
    trained, total = trainable_parameters(model)
    estimated, note = planner_estimate(config)
    window = [m["loss"] for m in metrics if m.get("kind") == "train"][-10:]
    summary = {
        "run_dir": str(run_dir),
        "method": config.method.name,
        "steps": state.step,
        "processes": ranks.world,
        "total_steps": state.total_steps,
        "stopped_early": state.stopped_early,
        "train_loss": sum(window) / len(window) if window else None,
        "final_step_loss": state.last_loss,
        "eval_loss": state.eval_loss,
        "initial_eval_loss": state.initial_eval_loss,
        "best_eval_loss": state.best_eval_loss,
        "tokens": state.tokens,
        "train_seconds": round(state.train_seconds, 3),
        "tokens_per_s": state.tokens / state.train_seconds if state.train_seconds else 0.0,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "trainable_params": trained,
        "total_params": total,
        "peak_rss_bytes": peak_rss_bytes(),
        "estimated_peak_bytes": estimated,
        "estimate_note": note,
        "adapter_path": str(artifact),
        "loss_curve": str(plot) if plot else None,
        "data": reports,
    }
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    model.eval()
    return FinetuneResult(summary, model, tokenizer)
