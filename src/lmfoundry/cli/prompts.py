"""`lmf prompts list | show | register | render`: prompt templates and their versions."""

from __future__ import annotations

import argparse
from typing import Any

from lmfoundry.cli.common import add_command_group, add_json_flag, add_subcommand, print_result
from lmfoundry.eval.prompting import as_text, plan_for
from lmfoundry.eval.tasks import load_task
from lmfoundry.generate.engine import load_model
from lmfoundry.prompts.registry import list_prompts, register_prompt, resolve_prompt
from lmfoundry.prompts.template import load_prompt_file

DESCRIPTION = (
    "A prompt template is a YAML file: system text, an instruction, k demonstrations (fixed, "
    "random or chosen by similarity) and the input's place. Built-in templates ship with "
    "lmfoundry; `register` stores versions in MLflow's prompt registry. Use one anywhere with "
    "--prompt NAME, NAME@VERSION or a file path (`lmf eval run/compare/approaches`, "
    "`lmf generate`, `lmf chat`, profiles, and the server's `prompt_template` field)."
)


def register(subparsers: Any) -> None:
    commands = add_command_group(subparsers, "prompts", description=DESCRIPTION)
    add_json_flag(add_subcommand(commands, "list", _list, help="built-in and registered templates"))
    show = add_subcommand(commands, "show", _show, help="a template's YAML (NAME, NAME@VERSION or a file)")
    show.add_argument("prompt", metavar="PROMPT")
    add_json_flag(show)
    reg = add_subcommand(commands, "register", _register, help="store a template file as a new version")
    reg.add_argument("file", metavar="PROMPT.yaml")
    reg.add_argument("--message", help="what changed in this version")
    add_json_flag(reg)
    render = add_subcommand(
        commands, "render", _render, help="show the prompt a model gets for one example of a task"
    )
    render.add_argument("prompt", metavar="PROMPT")
    render.add_argument("--model", required=True, help="the model it is rendered for (its chat template)")
    render.add_argument("--task", required=True, help="the task whose example (and train split) is used")
    render.add_argument("--data-dir", help="the task's data folder (dialogsum-synthetic)")
    render.add_argument("--example", type=int, default=0, help="which test example (default 0)")
    render.add_argument("--shots", type=int, help="demonstrations (default: the template's)")
    add_json_flag(render)


def _list(args: argparse.Namespace) -> int:
    rows = list_prompts()
    return print_result(args, {"prompts": rows}, lambda: _print_rows(rows))


def _print_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        print(f"{row['name']}\t{row['version']}\t{row['source']}")


def _show(args: argparse.Namespace) -> int:
    ref = resolve_prompt(args.prompt)
    data = {**ref.describe(), "yaml": ref.template.to_yaml()}
    return print_result(
        args,
        data,
        lambda: print(f"# {ref.template.name}@{ref.version} ({ref.source})\n" + data["yaml"], end=""),
    )


def _register(args: argparse.Namespace) -> int:
    ref = register_prompt(load_prompt_file(args.file), args.message)
    data = ref.describe()
    return print_result(args, data, lambda: print(f"registered {ref.template.name}@{ref.version}"))


def _render(args: argparse.Namespace) -> int:
    task = load_task(args.task, data_dir=args.data_dir)
    model = load_model(args.model)
    plan = plan_for(model, task, prompt=args.prompt, shots=args.shots)
    example = task.examples[args.example]
    rendered = plan.render(example)
    text = _as_model_sees_it(model, rendered.prompt)
    data = {"prompt": plan.describe(), "shots_used": rendered.shots, "prompt_tokens": rendered.prompt_tokens,
            "stop": list(rendered.stop), "text": text}  # fmt: skip
    return print_result(args, data, lambda: print(text))


def _as_model_sees_it(model: Any, prompt: str | list[Any]) -> str:
    """The prompt text after the model's chat template (messages), or as it is (text)."""
    tokenizer = getattr(model, "tokenizer", None)
    if isinstance(prompt, str) or tokenizer is None:
        return as_text(prompt)
    messages = [m.to_dict() for m in prompt]
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
