"""`lmf pipeline run | status | stop`: run a YAML pipeline with caching, restarts and a progress display."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lmfoundry.cli.common import add_command_group, add_json_flag, add_subcommand, print_result
from lmfoundry.pipeline.execute import describe, run_pipeline
from lmfoundry.pipeline.progress import PipelineDisplay
from lmfoundry.pipeline.report import print_summary, write_pipeline_report
from lmfoundry.pipeline.server_control import ServerRecord, running_record, stop_server
from lmfoundry.pipeline.spec import PipelineSpec, load_pipeline
from lmfoundry.pipeline.state import load_state

DESCRIPTION = (
    "Run the stages of a pipeline YAML (see configs/pipelines/). Each stage's outputs are "
    "recorded in WORKDIR/state.json, so a re-run skips stages whose config and inputs did "
    "not change; a failing stage (e.g. a gate) stops the run with a non-zero exit code "
    "before anything is registered or deployed."
)


def register(subparsers: Any) -> None:
    commands = add_command_group(subparsers, "pipeline", description=DESCRIPTION)
    run = add_subcommand(
        commands,
        "run",
        _run,
        help="run (or resume) a pipeline",
        description="Run a pipeline; finished stages with unchanged config and inputs are reused. "
        "Writes WORKDIR/report.html and prints a summary table.",
    )
    run.add_argument("pipeline", metavar="PIPELINE.yaml")
    run.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="top-level overrides, e.g. workdir=/tmp/qs"
    )
    run.add_argument(
        "--from", dest="from_stage", metavar="STAGE", help="re-run STAGE and every stage after it"
    )
    run.add_argument("--force", action="store_true", help="re-run every stage, ignoring the cache")
    run.add_argument("--no-progress", action="store_true", help="plain lines instead of the live display")
    add_json_flag(run)

    status = add_subcommand(commands, "status", _status, help="show what each stage last did",
                         description="Read WORKDIR/state.json and the server record.")  # fmt: skip
    status.add_argument("pipeline", metavar="PIPELINE.yaml")
    add_json_flag(status)

    stop = add_subcommand(commands, "stop", _stop, help="stop the server the pipeline's deploy stage started",
                       description="Stop the background `lmf serve` recorded in WORKDIR/server.json.")  # fmt: skip
    stop.add_argument("pipeline", metavar="PIPELINE.yaml")


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    spec = load_pipeline(args.pipeline, args.overrides)
    console = Console(stderr=True)
    live = False if (args.no_progress or args.json) else None
    display = PipelineDisplay([(s.name, s.kind) for s in spec.stages], console, live=live)
    result = run_pipeline(spec, from_stage=args.from_stage, force=args.force, display=display)
    result.report = str(write_pipeline_report(spec, result))
    data = {"pipeline": result.name, "ok": result.ok, "failed_stage": result.failed_stage,
            "error": result.error, "wall_s": round(result.wall_s, 3), "report": result.report,
            "stages": [{"name": s.name, "kind": s.kind, "status": s.status, "seconds": round(s.seconds, 3),
                        "outputs": s.outputs, "error": s.error} for s in result.stages]}  # fmt: skip
    print_result(args, data, lambda: print_summary(result))
    if result.ok:
        return 0
    if result.details and not args.json:
        print(result.details, file=sys.stderr)
    print(
        f"lmf: error: pipeline {result.name} failed at stage {result.failed_stage!r}: {result.error}",
        file=sys.stderr,
    )
    return 1


def _status(args: argparse.Namespace) -> int:
    spec = load_pipeline(args.pipeline)
    state = load_state(spec.workdir)
    server = running_record(spec.workdir)
    rows = []
    for stage in spec.stages:
        record = state["stages"].get(stage.name, {})
        rows.append({"name": stage.name, "kind": stage.kind, "status": record.get("status", "never run"),
                     "seconds": record.get("seconds"), "error": record.get("error"),
                     "result": describe(stage.kind, record.get("outputs") or {})})  # fmt: skip
    data = {"pipeline": spec.name, "workdir": str(spec.workdir), "stages": rows,
            "server": None if server is None else {"pid": server.pid, "url": server.url}}  # fmt: skip
    return print_result(args, data, lambda: _print_status(spec, rows, server))


def _print_status(spec: PipelineSpec, rows: list[dict[str, Any]], server: ServerRecord | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"pipeline {spec.name} ({spec.workdir})")
    for column in ("stage", "kind", "status", "result"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["kind"], row["status"], row["error"] or row["result"])
    Console().print(table)
    print(f"server: {server.url} (pid {server.pid})" if server else "server: not running")


def _stop(args: argparse.Namespace) -> int:
    record = stop_server(load_pipeline(args.pipeline).workdir)
    print(
        f"stopped the server at {record.url} (pid {record.pid})"
        if record
        else "no server recorded for this pipeline"
    )
    return 0
