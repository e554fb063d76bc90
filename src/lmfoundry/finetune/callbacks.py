"""What a training run shows and records: a progress bar, `metrics.jsonl`, the loss-curve PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress

    from lmfoundry.finetune.trainer import TrainState


class MetricsFile:
    """Appends one JSON line per step (`loss`, `lr`, `tokens_per_s`) and per evaluation."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def on_step(self, state: TrainState, record: dict[str, Any]) -> None:
        self._write({"kind": "train", **record})

    def on_eval(self, state: TrainState, record: dict[str, Any]) -> None:
        self._write({"kind": "eval", **record})


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records after `step` (a resumed run rewrites what came after its checkpoint)."""
    if not path.is_file():
        return
    from lmfoundry.fsutil import atomic_write_text

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


class ProgressBar:
    """A rich progress bar with the current loss, eval loss, tokens/s and ETA."""

    def __init__(self, total: int, completed: int = 0, enabled: bool = True) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress: Progress = Progress(
            TextColumn("finetune"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  eval {task.fields[eval]}  {task.fields[tps]} tok/s"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self.task = self.progress.add_task(
            "train", total=total, completed=completed, loss="-", eval="-", tps="-"
        )

    def __enter__(self) -> ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_step(self, state: TrainState, record: dict[str, Any]) -> None:
        self.progress.update(
            self.task,
            completed=state.step,
            loss=f"{record['loss']:.4f}",
            tps=f"{state.tokens / state.train_seconds:.0f}" if state.train_seconds else "-",
        )

    def on_eval(self, state: TrainState, record: dict[str, Any]) -> None:
        loss = record.get("eval_loss")
        self.progress.update(self.task, eval=f"{loss:.4f}" if loss is not None else "-")


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


def save_figure(figure: Any, out: Path) -> Path:
    """Write a matplotlib figure as PNG atomically (temp file, then rename) and close it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(out)
    return out
