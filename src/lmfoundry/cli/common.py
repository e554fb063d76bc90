"""Helpers shared by the command-group modules: JSON output and common options."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def print_json(data: Any) -> None:
    """Print one JSON object on one line (machine-readable `--json` output)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """Sampling flags shared by `generate`, `chat` and friends (None = the model's default)."""
    group = parser.add_argument_group("sampling")
    group.add_argument("--temperature", type=float, help="0 = greedy and deterministic (default 0.7)")
    group.add_argument("--top-k", type=int, help="keep the k most likely tokens (0 = off)")
    group.add_argument("--top-p", type=float, help="nucleus sampling mass in (0, 1]")
    group.add_argument("--min-p", type=float, help="drop tokens below min_p x the top probability")
    group.add_argument("--repetition-penalty", type=float, help=">1 discourages repeats")
    group.add_argument("--max-new-tokens", type=int, help="upper bound on generated tokens (default 256)")
    group.add_argument("--stop", action="append", help="stop sequence (repeatable)")
    group.add_argument("--seed", type=int, help="random seed for reproducible sampling")


def sampling_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling flags the user actually gave, as SamplingParams field values."""
    keys = ["temperature", "top_k", "top_p", "min_p", "repetition_penalty", "max_new_tokens", "stop", "seed"]
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
