"""Record a CLI command's run in MLflow unless the user opts out: the glue every `lmf` command shares.

Tracking is on by default (what MLflow autologging users expect): a finished `lmf eval run` or
`lmf quantize` lands in the same runs database as the pipeline stages. `--no-track` turns it off
for one command and `LMF_TRACK=0` everywhere (CI, tests). Tracking is a record of work that is
already done and saved, so a tracking problem never fails the command: it prints one warning on
stderr and the command keeps its exit code. The same goes for a missing mlflow (one note).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lmfoundry.track.runs import log_run, tracking_uri

TRACK_ENV = "LMF_TRACK"
_OFF = {"0", "false", "no", "off"}


def add_track_flag(parser: argparse.ArgumentParser) -> None:
    """Add `--no-track` to a command that logs its run."""
    parser.add_argument(
        "--no-track",
        action="store_true",
        help="do not record this run in MLflow (default: record it in $LMF_TRACKING_URI or the sqlite "
        "db under $LMF_HOME/mlflow; LMF_TRACK=0 turns tracking off for every command)",
    )


def tracking_enabled(args: argparse.Namespace) -> bool:
    """False with `--no-track` or `LMF_TRACK=0|false|no|off`."""
    if getattr(args, "no_track", False):
        return False
    return os.environ.get(TRACK_ENV, "1").strip().lower() not in _OFF


def track_cli_run(
    args: argparse.Namespace,
    kind: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    artifacts: Iterable[str | Path] = (),
    *,
    run_name: str | None = None,
    run_id: str | None = None,
) -> str | None:
    """Log the run (see `lmfoundry.track.runs.log_run`) and print its id on stderr.

    `run_id` is a run started earlier (`lmf finetune` streams step metrics into it); the final
    numbers go into it and it ends.

    Returns the MLflow run id, or None when tracking is off, mlflow is missing, or logging failed.
    """
    if not tracking_enabled(args):
        return None
    if importlib.util.find_spec("mlflow") is None:
        _say("note: mlflow is not installed, so this run is not tracked "
             "(pip install 'lmfoundry[track]', or pass --no-track to silence this)")  # fmt: skip
        return None

    try:
        run_id = log_run(
            kind, params, metrics, artifacts, run_name=run_name, tags={"lmf.source": "cli"}, run_id=run_id
        )
    except Exception as err:  # the results are saved already; a broken tracker must not hide them
        _say(f"warning: run not tracked in {tracking_uri()}: {type(err).__name__}: {err} "
             "(results are saved; pass --no-track to skip tracking)")  # fmt: skip
        return None
    _say(f"tracked {kind} run {run_id} in {tracking_uri()}")
    return run_id


def _say(text: str) -> None:
    print(f"lmf: {text}", file=sys.stderr)
