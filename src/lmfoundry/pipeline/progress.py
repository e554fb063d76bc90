"""One display for the whole pipeline: the stage list with status and time, and a bar for the
stage that is running. Without a terminal (CI logs, --no-progress) it prints one line per event."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

STATUS_STYLE = {
    "pending": ("·", "dim"),
    "running": ("▶", "bold cyan"),
    "done": ("✓", "green"),
    "cached": ("↺", "blue"),
    "failed": ("✗", "bold red"),
    "not run": ("-", "dim"),
}


class _Stage:
    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.status = "pending"
        self.seconds: float | None = None
        self.note = ""


class PipelineDisplay:
    """Context manager; `start(name)` returns the running stage's progress handle."""

    def __init__(
        self, stages: list[tuple[str, str]], console: Console | None = None, live: bool | None = None
    ) -> None:
        self.console = console or Console(stderr=True)
        self.live_mode = self.console.is_terminal if live is None else live
        self.stages = {name: _Stage(name, kind) for name, kind in stages}
        self.bar = Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=self.console)  # fmt: skip
        self.task: TaskID | None = None
        self.current: str | None = None
        self.started = 0.0
        self._live: Live | None = None

    def __enter__(self) -> PipelineDisplay:
        if self.live_mode:
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._drop_bar()
            self._live.refresh()
            self._live.stop()
            self._live = None

    def __rich__(self) -> Group:
        table = Table(box=None, show_header=False, padding=(0, 1))
        for stage in self.stages.values():
            icon, style = STATUS_STYLE[stage.status]
            seconds = stage.seconds if stage.status != "running" else time.perf_counter() - self.started
            timing = f"{seconds:6.1f}s" if seconds is not None else ""
            table.add_row(f"[{style}]{icon}[/]", f"[{style}]{stage.name}[/]", f"[dim]{stage.kind}[/]",
                          stage.status, timing, stage.note)  # fmt: skip
        parts: list[Any] = [table]
        if self.task is not None:
            parts.append(self.bar)
        return Group(*parts)

    # --- events from the runner -------------------------------------------------------------

    def set_status(self, name: str, status: str, seconds: float | None = None, note: str = "") -> None:
        stage = self.stages[name]
        stage.status, stage.seconds = status, seconds
        if note:
            stage.note = note
        if status != "running" and name == self.current:
            self._drop_bar()
            self.current = None
        if not self.live_mode and status != "running":
            icon, _ = STATUS_STYLE[status]
            timing = f" {seconds:.1f}s" if seconds is not None else ""
            self.console.print(f"{icon} {name} ({stage.kind}): {status}{timing}{'  ' + note if note else ''}",
                               highlight=False)  # fmt: skip

    def start(self, name: str) -> StageHandle:
        self.current, self.started = name, time.perf_counter()
        self.set_status(name, "running")
        if not self.live_mode:
            self.console.print(f"▶ {name} ({self.stages[name].kind}) ...", highlight=False)
        return StageHandle(self, name)

    def _drop_bar(self) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None


class StageHandle:
    """The running stage's view of the display (the `StageProgress` protocol)."""

    def __init__(self, display: PipelineDisplay, name: str) -> None:
        self.display, self.name = display, name

    def total(self, n: int, label: str = "") -> None:
        d = self.display
        d._drop_bar()
        if n > 0:
            d.task = d.bar.add_task(f"{self.name} {label}".strip(), total=n)

    def advance(self, n: int = 1) -> None:
        if self.display.task is not None:
            self.display.bar.advance(self.display.task, n)

    def note(self, text: str) -> None:
        self.display.stages[self.name].note = text
