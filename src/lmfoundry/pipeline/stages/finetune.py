"""Fine-tune with a `configs/finetune/*.yaml` config (plus overrides) into the stage folder."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.config import to_dict
from lmfoundry.errors import InvalidInputError
from lmfoundry.finetune.config import load_finetune_config
from lmfoundry.finetune.run import run_finetune
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.stage_kind import StageKind
from lmfoundry.track.runs import log_run


@dataclass
class Options:
    config: str = ""
    """A fine-tuning YAML (relative to the pipeline file)."""
    overrides: list[str] = field(default_factory=list)
    """`key=value` overrides, e.g. `data.path=${data.path}` or `training.max_steps=5`."""
    launcher: str = "local"
    """local: train in this process | accelerate: print/run `accelerate launch` (see docs/scaling.md)."""
    accelerate_config: str | None = None
    """accelerate config file (FSDP / DeepSpeed settings) used when launcher is accelerate."""
    num_processes: int | None = None


class _StepProgress:
    """A finetune callback that moves the pipeline's bar."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx

    def on_step(self, state: Any, record: dict[str, Any]) -> None:
        self.ctx.progress.advance()
        self.ctx.progress.note(f"loss {record.get('loss', float('nan')):.3f}")

    def on_eval(self, state: Any, record: dict[str, Any]) -> None:
        loss = record.get("eval_loss")
        if loss is not None:
            self.ctx.progress.note(f"eval loss {loss:.3f}")


def _config(ctx: StageContext, options: Options, out_dir: Path) -> Any:
    if not options.config:
        raise InvalidInputError("finetune stage needs 'config' (a configs/finetune/*.yaml file)")
    return load_finetune_config(ctx.path(options.config), [*options.overrides, f"output_dir={out_dir}"])


def accelerate_command(config_path: Path, overrides: list[str], options: Options) -> list[str]:
    """The `accelerate launch` command that runs the same fine-tuning config on many devices."""
    command = ["accelerate", "launch"]
    if options.accelerate_config:
        command += ["--config_file", options.accelerate_config]
    if options.num_processes:
        command += ["--num_processes", str(options.num_processes)]
    return [*command, "-m", "lmfoundry.cli.main", "finetune", str(config_path), *overrides]


def run(ctx: StageContext, options: Options) -> dict[str, Any]:
    key = hashlib.sha256(repr((options.config, options.overrides)).encode()).hexdigest()[:10]
    out_dir = ctx.stage_dir / f"run-{key}"
    config = _config(ctx, options, out_dir)
    if options.launcher == "accelerate":
        return {**_launch(ctx, options, out_dir), "base": config.model.name}
    if options.launcher != "local":
        raise InvalidInputError(f"finetune launcher must be local or accelerate, got {options.launcher!r}")
    if out_dir.exists():  # a previous attempt that did not finish: start it over
        import shutil

        shutil.rmtree(out_dir)
    steps = config.training.max_steps
    ctx.progress.total(steps or 0, "steps")
    summary = run_finetune(config, progress=False, callbacks=[_StepProgress(ctx)])
    outputs = {k: summary.get(k) for k in ("adapter_path", "train_loss", "eval_loss", "initial_eval_loss",
                                           "tokens_per_s", "steps", "train_seconds", "run_dir")}  # fmt: skip
    outputs["base"] = config.model.name
    outputs["method"] = config.method.name
    outputs["run_id"] = None
    if ctx.tracking:
        run_dir = Path(summary["run_dir"])
        artifacts = [p for p in (run_dir / "summary.json", run_dir / "metrics.jsonl", run_dir / "loss_curve.png",
                                 Path(summary["adapter_path"])) if p.exists()]  # fmt: skip
        outputs["run_id"] = log_run(
            "finetune", to_dict(config), summary, artifacts, to_dict(config), run_name=f"pipeline:{ctx.name}"
        )
    return outputs


def _launch(ctx: StageContext, options: Options, out_dir: Path) -> dict[str, Any]:
    import subprocess

    overrides = [*options.overrides, f"output_dir={out_dir}"]
    command = accelerate_command(ctx.path(options.config), overrides, options)
    ctx.progress.note(" ".join(command))
    subprocess.run(command, check=True)
    import json

    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    return {"adapter_path": summary["adapter_path"], "eval_loss": summary.get("eval_loss"),
            "train_loss": summary.get("train_loss"), "run_dir": str(out_dir)}  # fmt: skip


def fresh(ctx: StageContext, outputs: dict[str, Any]) -> bool:
    adapter = outputs.get("adapter_path")
    return isinstance(adapter, str) and Path(adapter).exists()


KIND = StageKind(Options, run, fresh, summary=(__doc__ or "").strip().splitlines()[0])
