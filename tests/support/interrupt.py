"""A training callback that stops a run the way Ctrl-C would (resume tests)."""

from __future__ import annotations

from typing import Any


class InterruptAt:
    """Raises KeyboardInterrupt after step `step`, as Ctrl-C would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, state: Any, record: dict[str, Any]) -> None:
        if state.step == self.step:
            raise KeyboardInterrupt

    def on_eval(self, state: Any, record: dict[str, Any]) -> None:
        pass
