"""`lmf reward score`: score responses to a prompt with a trained reward model."""

from __future__ import annotations

import argparse
from typing import Any

from lmfoundry.cli.common import add_command_group, add_json_flag, add_subcommand, print_result
from lmfoundry.finetune.align.reward import score

DESCRIPTION = (
    "Reward models score (prompt, response) pairs; train one with `lmf finetune` and `stage: reward`."
)


def register(subparsers: Any) -> None:
    commands = add_command_group(subparsers, "reward", description=DESCRIPTION)
    score = add_subcommand(
        commands,
        "score",
        _score,
        help="score one or more responses to a prompt",
        description=(
            "Score each --response to --prompt with the reward model in MODEL (a `stage: reward` run "
            "folder). The prompt is rendered with the template the model was trained with, so pass "
            "the raw instruction (e.g. 'Summarize the dialogue below.' plus the dialogue). Higher is "
            "better; compare scores of one prompt's responses, not across prompts."
        ),
    )
    score.add_argument("model", help="run folder of a `stage: reward` fine-tuning run")
    score.add_argument("--prompt", required=True, help="the prompt (instruction) text")
    score.add_argument(
        "--response", action="append", required=True, help="a response to score (repeat for several)"
    )
    add_json_flag(score)


def _score(args: argparse.Namespace) -> int:
    scores = score(args.model, args.prompt, args.response)
    return print_result(args, {"scores": scores}, lambda: _print_scores(scores, args.response))


def _print_scores(scores: list[float], responses: list[str]) -> None:
    for value, response in zip(scores, responses, strict=True):
        shown = response if len(response) <= 60 else response[:57] + "..."
        print(f"{value:+.4f}  {shown}")
