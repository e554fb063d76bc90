"""`lmf agent run | eval`: a tool-using agent on one task, or scored on the bundled tool-use task."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from typing import Any

from lmfoundry.agents.evaluate import AgentScore, TaskOutcome, evaluate_agent
from lmfoundry.agents.loop import AgentResult, Step, run_agent
from lmfoundry.agents.model import LocalToolModel, OpenAIToolModel, ToolChatModel
from lmfoundry.agents.tasks import ToolTask
from lmfoundry.agents.toolbox import BUILTIN_TOOLS, ToolOptions, build_tools
from lmfoundry.agents.tools.base import close_tools
from lmfoundry.agents.train_data import make_tool_use_synthetic
from lmfoundry.cli.common import add_command_group, add_json_flag, add_subcommand, print_result
from lmfoundry.cli.tracking import add_track_flag, track_cli_run, tracking_enabled
from lmfoundry.errors import LmfError
from lmfoundry.generate.engine import load_model

DESCRIPTION = (
    "A tool-using agent: the model calls tools (calculator, read-only SQL over a SQLite file, RAG "
    "search over a store, HTTP GET on allowed hosts only, Python functions, MCP servers) until it "
    "answers. Each step is printed as it happens and traced in MLflow unless --no-track. "
    "`eval` scores a model on the bundled tool-use task. See docs/agents.md."
)


def register(subparsers: Any) -> None:
    commands = add_command_group(subparsers, "agent", description=DESCRIPTION)
    run = add_subcommand(commands, "run", _run, help="run the agent on one task, printing each step")
    run.add_argument("model", metavar="MODEL", help="model name (or the served model's name with --base-url)")
    run.add_argument("task", help="what the agent should do")
    run.add_argument("--tools", type=_names, help=f"comma-separated built-ins ({','.join(BUILTIN_TOOLS)}); "
                     "default: calculator plus every tool whose target is given below")  # fmt: skip
    run.add_argument("--sql-db", metavar="PATH", help="SQLite file the sql tool reads (read-only)")
    run.add_argument("--rag-store", metavar="NAME", help="RAG store the rag_search tool searches")
    run.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                     help="a host http_get may fetch from (repeatable; http_get is off without one)")  # fmt: skip
    run.add_argument("--mcp", action="append", default=[], metavar="COMMAND",
                     help='an MCP server to start over stdio, e.g. "python server.py" (repeatable)')  # fmt: skip
    run.add_argument("--python", action="append", default=[], metavar="MODULE:FUNCTION",
                     help="a type-hinted Python function as a tool (repeatable)")  # fmt: skip
    run.add_argument("--system", help="system prompt (default: use the tools, answer when done)")
    _add_model_options(run)
    add_track_flag(run)
    add_json_flag(run)
    ev = add_subcommand(commands, "eval", _eval, help="score a model on the bundled tool-use task")
    ev.add_argument("model", metavar="MODEL", help="model name (or the served model's name with --base-url)")
    ev.add_argument("--limit", type=int, help="only the first N items")
    ev.add_argument("--seed", type=int, default=0, help="which variant of the task (default 0)")
    ev.add_argument("--rag-store", metavar="NAME",
                    help="a store indexed from builtin:python-reference; adds the RAG items")  # fmt: skip
    _add_model_options(ev)
    add_track_flag(ev)
    add_json_flag(ev)
    data = add_subcommand(commands, "data", _data, help="write function-calling training data for the tool-use task",
                          description="Write train/validation/test JSONL of function-calling conversations (the "
                          "tool-use task's reference calls, run through the real tools) for `lmf finetune`; task "
                          "seeds are disjoint from those `lmf agent eval` scores. See docs/agents.md.")  # fmt: skip
    data.add_argument("--n", type=int, default=600, help="chat records in all splits (default 600)")
    data.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    data.add_argument("--out", help="output directory (default $LMF_HOME/data/tool-use-synthetic)")
    add_json_flag(data)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", help="an OpenAI-compatible server (e.g. http://127.0.0.1:8000/v1) instead "
                        "of loading MODEL here; the key comes from $OPENAI_API_KEY")  # fmt: skip
    parser.add_argument("--max-steps", type=int, default=8, help="model calls before giving up (default 8)")
    parser.add_argument(
        "--time-limit", type=float, default=120.0, help="seconds before giving up (default 120)"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=512, help="tokens per model reply (default 512)"
    )
    parser.add_argument("--adapter", action="append", default=[], metavar="PATH",
                        help="a fine-tuned adapter to apply to MODEL, e.g. runs/tool-use-lora/adapter (repeatable)")  # fmt: skip
    parser.add_argument("--first-call", choices=["auto", "required"], default=None,
                        help="tool_choice of the first step: 'required' makes the model call a tool before "
                        "answering (small models otherwise answer from memory); later steps are 'auto'. "
                        "Default: auto for run, required for eval (every task item needs a tool)")  # fmt: skip


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _model(args: argparse.Namespace) -> ToolChatModel:
    if args.base_url:
        if args.adapter:
            raise LmfError(
                "--adapter applies to a model loaded here; a server names its adapters as MODEL:ADAPTER"
            )
        return OpenAIToolModel(
            args.base_url, args.model, os.environ.get("OPENAI_API_KEY"), max_tokens=args.max_new_tokens
        )
    return LocalToolModel(load_model(args.model, adapters=args.adapter), max_new_tokens=args.max_new_tokens)


def _tracing(args: argparse.Namespace) -> bool:
    return tracking_enabled(args) and importlib.util.find_spec("mlflow") is not None


def _run(args: argparse.Namespace) -> int:
    options = ToolOptions(args.sql_db, args.rag_store, args.allow_host, args.mcp, args.python)
    tools = build_tools(args.tools, options)  # bad tool options fail before the model loads
    try:
        model = _model(args)
        on_step = None if args.json else _print_step
        result = run_agent(model, args.task, tools, system=args.system, max_steps=args.max_steps,
                           time_limit_s=args.time_limit, on_step=on_step, trace=_tracing(args),
                           first_tool_choice=args.first_call)  # fmt: skip
    finally:
        close_tools(tools)
    return print_result(args, result.to_dict(), lambda: _print_answer(result))


def _print_step(step: Step) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    console.print(f"[bold]step {step.index + 1}[/bold] [dim]({step.duration_s:.1f} s)[/dim]")
    if step.content and step.tool_calls:
        console.print(f"  [italic]{escape(step.content.strip())}[/italic]")
    for call in step.tool_calls:
        arguments = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
        console.print(f"  [cyan]→ {escape(call.name)}[/cyan]({escape(arguments)})")
        style = "red" if call.error else "green"
        console.print(f"  [{style}]← {escape(_short(call.observation))}[/{style}]")


def _short(text: str, limit: int = 400) -> str:
    text = text.strip().replace("\n", "\n    ")
    return text if len(text) <= limit else text[:limit] + " ..."


def _print_answer(result: AgentResult) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    if result.stop_reason == "answer":
        console.print(f"[bold]answer:[/bold] {escape(result.answer or '')}")
    else:
        console.print(f"[yellow]stopped without an answer: {result.stop_reason}[/yellow]")
    console.print(f"[dim]{len(result.steps)} steps, {result.valid_calls} valid and {result.invalid_calls} "
                  f"invalid tool calls, {result.duration_s:.1f} s[/dim]")  # fmt: skip
    if result.trace_id:
        console.print(f"[dim]MLflow trace {result.trace_id} (experiment lmf-agent)[/dim]")


def _eval(args: argparse.Namespace) -> int:
    model = _model(args)
    on_task = None if args.json else _print_outcome
    score = evaluate_agent(model, seed=args.seed, limit=args.limit, rag_store=args.rag_store,
                           max_steps=args.max_steps, time_limit_s=args.time_limit, on_task=on_task,
                           first_tool_choice=args.first_call or "required")  # fmt: skip
    data = score.to_dict()
    params = {"model": args.model, "base_url": args.base_url, "seed": args.seed, "limit": args.limit,
              "rag_store": args.rag_store, "max_steps": args.max_steps,
              "first_call": args.first_call or "required"}  # fmt: skip
    metrics = {k: data[k] for k in ("success_rate", "valid_call_rate", "mean_steps", "n", "successes")}
    track_cli_run(args, "agent-eval", params, metrics, run_name=f"agent-eval {args.model}")
    return print_result(args, data, lambda: _print_score(score))


def _data(args: argparse.Namespace) -> int:
    paths = make_tool_use_synthetic(args.n, args.seed, args.out)
    sizes = {split: sum(1 for _ in path.open(encoding="utf-8")) for split, path in paths.items()}
    folder = str(next(iter(paths.values())).parent)
    return print_result(args, {"dir": folder, "splits": sizes}, lambda: print(f"wrote {folder}: {sizes}"))


def _print_outcome(task: ToolTask, outcome: TaskOutcome) -> None:
    mark = "ok  " if outcome.success else "FAIL"
    answer = " ".join((outcome.answer or f"<{outcome.stop_reason}>").split())[:100]
    print(f"{mark} {task.id}: expected {task.expected!r}, got {answer!r} ({outcome.steps} steps)", flush=True)


def _print_score(score: AgentScore) -> None:
    rate = "n/a (no tool calls)" if score.valid_call_rate is None else f"{score.valid_call_rate:.1%}"
    calls = score.valid_calls + score.invalid_calls
    print(f"task success rate  {score.success_rate:.1%} ({score.successes}/{score.n})")
    print(f"valid-call rate    {rate} ({score.valid_calls}/{calls})")
    print(f"mean steps         {score.mean_steps:.2f}")
