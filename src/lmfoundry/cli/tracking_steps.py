"""Stream a training run's step and eval metrics into MLflow while it trains (`lmf finetune`).

`StepTracker` is a training-loop callback (`on_step`/`on_eval`, like `MetricsFile`). The loop
calls callbacks on the main process only (sft and pretrain set `loop.callbacks` under
`ranks.is_main`), so the run is started lazily on the first event: the other processes of an
`accelerate launch` never create one. Metrics are grouped as `train/loss`, `train/lr`,
`train/tokens_per_s`, ... and `eval/loss`, so they do not mix with the summary's `train_loss`
and `eval_loss` that the CLI logs into the same run at the end. As with `track_cli_run`, a
tracking problem never fails training: one warning on stderr, then the run is not tracked.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from lmfoundry.track.runs import end_run, log_step_metrics, start_run, tracking_uri


class StepTracker:
    """Loop callback that logs each step's and each evaluation's numbers to one MLflow run."""

    def __init__(self, kind: str, *, run_name: str | None = None) -> None:
        self.kind, self.run_name = kind, run_name
        self.run_id: str | None = None
        self.failed = False
        """True after the first tracking error: nothing more is logged, the run is untracked."""

    def on_step(self, state: Any, record: dict[str, Any]) -> None:
        self._log("train", state.step, record)

    def on_eval(self, state: Any, record: dict[str, Any]) -> None:
        self._log("eval", state.step, record)

    def _log(self, group: str, step: int, record: dict[str, Any]) -> None:
        if self.failed:
            return
        metrics = {f"{group}/{k.removeprefix('eval_')}": v for k, v in record.items() if k != "step"}
        try:
            if self.run_id is None:
                self.run_id = start_run(self.kind, run_name=self.run_name, tags={"lmf.source": "cli"})
            log_step_metrics(self.run_id, metrics, step)
        except Exception as err:  # training matters more than its record
            self.failed = True
            print(
                f"lmf: warning: run not tracked in {tracking_uri()}: {type(err).__name__}: {err} "
                "(training goes on; pass --no-track to skip tracking)",
                file=sys.stderr,
            )
            self.end("FAILED")

    def end(self, status: str) -> None:
        """End the run, if one was started, as `status` (best effort)."""
        if self.run_id is None:
            return
        with contextlib.suppress(Exception):  # a broken tracker: the warning is out already
            end_run(self.run_id, status)
