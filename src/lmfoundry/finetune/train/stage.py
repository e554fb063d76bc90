"""The contract every `lmf finetune` stage keeps (sft, reward, dpo, ppo), and what they share.

A stage is a function `runner(job: StageJob) -> dict`: it trains and returns its own summary
fields. `run_stage` wraps every runner the same way:

1. process settings: `training.threads`, `training.lean_allocator`;
2. the run folder: `resolved_config.yaml` written, an existing run never overwritten, `--resume`
   only with the config the run started with and a checkpoint to resume from;
3. the runner itself, which appends to `metrics.jsonl` (`MetricsFile`), draws one progress bar
   (`StageProgress`), keeps `checkpoint/` and saves it on Ctrl-C before re-raising, and saves
   its artifact with `artifacts.save_artifact`;
4. the fields every summary has (run_dir, stage, method, wall seconds, peak RSS), written to
   `summary.json` atomically, on the main process only.

`finetune/run.py` maps `stage:` names to runners; a new stage is a runner and a line there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lmfoundry.config import to_dict, write_resolved
from lmfoundry.errors import LmfError
from lmfoundry.finetune.config import FinetuneConfig, TrainingConfig
from lmfoundry.finetune.train.callbacks import CHECKPOINT_DIR, METRICS_FILE
from lmfoundry.finetune.train.trl_stage import latest_checkpoint
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.memory.allocator import use_lean_allocator
from lmfoundry.rss import peak_rss_bytes

SUMMARY_FILE = "summary.json"


@dataclass
class StageJob:
    """What a stage runner gets, and what it hands back besides its summary."""

    config: FinetuneConfig
    run_dir: Path
    resume: bool = False
    progress: bool = True
    callbacks: list[Any] = field(default_factory=list)
    """Extra callbacks: the loop's `on_step`/`on_eval` for sft, TrainerCallbacks for trl stages."""
    is_main: bool = True
    """False on the other processes of a launched data-parallel run: they write nothing."""
    model: Any = None
    """The trained model, in memory, when the runner keeps it (sft does)."""
    tokenizer: Any = None


StageRunner = Callable[[StageJob], dict[str, Any]]


def prepare_run_dir(config: FinetuneConfig, resume: bool) -> Path:
    """Create the run folder; refuse to overwrite a run, and to resume with a changed config."""
    run_dir = Path(config.output_dir).expanduser()
    resolved = run_dir / "resolved_config.yaml"
    if resume:
        if not (run_dir / CHECKPOINT_DIR / "state.pt").is_file() and latest_checkpoint(run_dir) is None:
            raise LmfError(f"nothing to resume: {run_dir} has no {CHECKPOINT_DIR}/")
        saved = yaml.safe_load(resolved.read_text(encoding="utf-8"))
        if saved != to_dict(config):
            raise LmfError(f"--resume needs the config the run started with; {resolved} differs")
        return run_dir
    if (run_dir / CHECKPOINT_DIR).exists() or (run_dir / SUMMARY_FILE).exists():
        raise LmfError(f"{run_dir} already holds a run: pass --resume, or set output_dir=NEW_FOLDER")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / METRICS_FILE).unlink(missing_ok=True)
    write_resolved(config, run_dir)
    return run_dir


def apply_process_settings(training: TrainingConfig) -> None:
    """Threads and allocator: set before anything allocates."""
    import torch

    if training.threads:
        torch.set_num_threads(training.threads)
    if training.lean_allocator:
        use_lean_allocator()


def run_stage(
    config: FinetuneConfig,
    runner: StageRunner,
    *,
    resume: bool = False,
    progress: bool = True,
    callbacks: list[Any] | None = None,
) -> tuple[dict[str, Any], StageJob]:
    """Run one stage as the module docstring says; return (summary, the job the runner filled)."""
    apply_process_settings(config.training)
    run_dir = prepare_run_dir(config, resume)  # every process: identical, atomic writes
    job = StageJob(config, run_dir, resume, progress, list(callbacks or []))
    started = time.perf_counter()
    fields = runner(job)
    if not job.is_main:
        return {"run_dir": str(run_dir), **fields}, job
    summary = {
        "run_dir": str(run_dir),
        "stage": config.stage,
        "method": config.method.name,
        **fields,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "peak_rss_bytes": peak_rss_bytes(),
    }
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    return summary, job
