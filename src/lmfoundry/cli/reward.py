"""`lmf reward score`: score responses to a prompt with a trained reward model."""

from __future__ import annotations

import argparse
from typing import Any

from lmfoundry.cli.common import add_json_flag, print_json
from lmfoundry.finetune.align.reward import score


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reward",
        help="use reward models trained with `stage: reward`",
        description="Reward models score (prompt, response) pairs; train one with `lmf finetune` and `stage: reward`.",
    )
    commands = parser.add_subparsers(dest="reward_command", metavar="SUBCOMMAND")
    score = commands.add_parser(
        "score",
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
    score.set_defaults(handler=_score)


def _score(args: argparse.Namespace) -> int:

    scores = score(args.model, args.prompt, args.response)
    if args.json:
        print_json({"scores": scores})
        return 0
    for value, response in zip(scores, args.response, strict=True):
        shown = response if len(response) <= 60 else response[:57] + "..."
        print(f"{value:+.4f}  {shown}")
    return 0
