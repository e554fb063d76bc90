"""The pipeline display: stage list with status, a bar for the running stage, plain lines in logs."""

from __future__ import annotations

import io

from rich.console import Console

from lmfoundry.pipeline.progress import PipelineDisplay


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=120, color_system=None), out


def test_plain_mode_prints_one_line_per_event() -> None:
    console, out = _console(False)
    with PipelineDisplay([("data", "data"), ("gate", "gate")], console) as display:
        handle = display.start("data")
        handle.total(4, "records")
        handle.advance(4)
        display.set_status("data", "done", 1.25, "train 3")
        display.start("gate")
        display.set_status("gate", "failed", 0.5, "gates failed: rougeL")
    lines = out.getvalue().splitlines()
    assert lines == [
        "▶ data (data) ...",
        "✓ data (data): done 1.2s  train 3",
        "▶ gate (gate) ...",
        "✗ gate (gate): failed 0.5s  gates failed: rougeL",
    ]


def test_live_mode_renders_stages_and_the_running_bar() -> None:
    console, _ = _console(True)
    display = PipelineDisplay([("data", "data"), ("finetune", "finetune")], console, live=True)
    handle = display.start("finetune")
    handle.total(30, "steps")
    handle.advance(12)
    handle.note("loss 2.100")
    with console.capture() as capture:
        console.print(display)
    text = capture.get()
    assert "data" in text and "pending" in text and "running" in text and "loss 2.100" in text
    assert "finetune steps" in text and "12/30" in text
    display.set_status("finetune", "done", 3.0)
    with console.capture() as capture:
        console.print(display)
    assert "12/30" not in capture.get() and "done" in capture.get()
