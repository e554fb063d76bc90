"""What a training stage shows and records: one progress display, `metrics.jsonl`, PNG curves.

Every stage (sft's own loop, the trl-backed reward and dpo stages, ppo) draws the same
`StageProgress` bar and appends the same kind of JSON lines (`{"kind": "train"|"eval", "step":
N, ...}`) to `METRICS_FILE` in its run folder, and keeps its resumable state in `CHECKPOINT_DIR`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.fsutil import atomic_write_text

if TYPE_CHECKING:
    from lmfoundry.finetune.train.loop import TrainState

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to a run's metrics file."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


class MetricsFile:
    """The loop callback that appends one JSON line per step (`loss`, `lr`, `tokens_per_s`) and per evaluation."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_step(self, state: TrainState, record: dict[str, Any]) -> None:
        append_metrics(self.path, {"kind": "train", **record})

    def on_eval(self, state: TrainState, record: dict[str, Any]) -> None:
        append_metrics(self.path, {"kind": "eval", **record})


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records after `step` (a resumed run rewrites what came after its checkpoint)."""
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line)["step"] <= step
    ]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def metrics_line(record: dict[str, Any], keys: tuple[str, ...]) -> str:
    """`"loss 0.1234  margin 0.5"`: the named numbers of a metrics record, for the progress bar."""
    return "  ".join(f"{k} {record[k]:.4g}" for k in keys if isinstance(record.get(k), int | float))


class StageProgress:
    """The progress display of a training stage: its name, step N/M, a metrics line, ETA (stderr)."""

    def __init__(self, label: str, total: int, completed: int = 0, enabled: bool = True) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self.task = self.progress.add_task(label, total=total, completed=completed, info="")

    def __enter__(self) -> StageProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, step: int, info: str | None = None, total: int | None = None) -> None:
        fields: dict[str, Any] = {"completed": step}
        if info is not None:
            fields["info"] = info
        if total is not None:
            fields["total"] = total
        self.progress.update(self.task, **fields)


class ProgressBar:
    """The loop's callback on a `StageProgress`: current loss, eval loss, tokens/s (and MFU when
    `flops_per_token` (6·N) and the machine's `peak_flops` are given: the pretraining stages)."""

    def __init__(
        self,
        total: int,
        completed: int = 0,
        enabled: bool = True,
        *,
        label: str = "finetune",
        flops_per_token: float = 0.0,
        peak_flops: float = 0.0,
    ) -> None:
        self.display = StageProgress(label, total, completed, enabled)
        self.loss, self.eval, self.tps = "-", "-", "-"
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
        self.mfu = ""

    def __enter__(self) -> ProgressBar:
        self.display.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.display.__exit__(*exc)

    def _show(self, step: int) -> None:
        self.display.update(step, f"loss {self.loss}  eval {self.eval}  {self.tps} tok/s{self.mfu}")

    def on_step(self, state: TrainState, record: dict[str, Any]) -> None:
        self.loss = f"{record['loss']:.4f}"
        rate = state.tokens / state.train_seconds if state.train_seconds else 0.0
        self.tps = f"{rate:.0f}" if rate else "-"
        if self.flops_per_token and self.peak_flops and rate:
            self.mfu = f"  mfu {100 * rate * self.flops_per_token / self.peak_flops:.1f}%"
        self._show(state.step)

    def on_eval(self, state: TrainState, record: dict[str, Any]) -> None:
        loss = record.get("eval_loss")
        self.eval = f"{loss:.4f}" if loss is not None else "-"
        self._show(state.step)


def plot_loss_curve(metrics: list[dict[str, Any]], out: Path) -> Path | None:
    """Train and eval loss against step, as a PNG (matplotlib, headless Agg backend)."""
    train = [(m["step"], m["loss"]) for m in metrics if m.get("kind") == "train"]
    evals = [
        (m["step"], m["eval_loss"])
        for m in metrics
        if m.get("kind") == "eval" and m.get("eval_loss") is not None
    ]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(*zip(*train, strict=True), label="train loss", linewidth=1)
    if evals:
        axis.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    axis.set_xlabel("step")
    axis.set_ylabel("cross-entropy")
    axis.legend()
    axis.grid(alpha=0.3)
    return save_figure(figure, out)


def plot_panels(metrics: list[dict[str, Any]], panels: list[tuple[str, list[str]]], out: Path) -> Path | None:
    """One subplot per (title, keys): each key's values against step, train and eval records alike.

    Used by the alignment stages, whose curves (reward, margin, accuracy, KL) vary by stage.
    """
    drawn = [
        (
            title,
            [
                (key, [(m["step"], m[key]) for m in metrics if isinstance(m.get(key), int | float)])
                for key in keys
            ],
        )
        for title, keys in panels
    ]
    drawn = [(title, [(k, pts) for k, pts in series if pts]) for title, series in drawn]
    drawn = [(title, series) for title, series in drawn if series]
    if not drawn:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(drawn), figsize=(5 * len(drawn), 3.6), squeeze=False)
    for axis, (title, series) in zip(axes[0], drawn, strict=True):
        for key, points in series:
            axis.plot(*zip(*points, strict=True), "o-" if len(points) < 8 else "-", label=key, linewidth=1)
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    return save_figure(figure, out)


def plot_stage_curves(run_dir: Path, panels: list[tuple[str, list[str]]]) -> str | None:
    """`curves.png` of an alignment stage from its metrics file; its path, or None if nothing to draw."""
    plot = plot_panels(read_metrics(run_dir / METRICS_FILE), panels, run_dir / "curves.png")
    return str(plot) if plot else None


def save_figure(figure: Any, out: Path) -> Path:
    """Write a matplotlib figure as PNG atomically (temp file, then rename) and close it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(out)
    return out
