"""`lmf data`: make the bundled data sets and inspect fine-tuning data through a prompt template."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lmfoundry.cli.common import add_command_group, add_json_flag, add_subcommand, print_result
from lmfoundry.errors import InvalidInputError
from lmfoundry.finetune.data.formats import detect_format
from lmfoundry.finetune.data.records import load_records
from lmfoundry.finetune.data.synthetic import make
from lmfoundry.finetune.data.templates import render, resolve_template
from lmfoundry.finetune.data.tokenize import (
    DEFAULT_MAX_LENGTH,
    build_dataset,
    length_stats,
    max_length_from_config,
)
from lmfoundry.models.load import load_tokenizer

DESCRIPTION = (
    "Fine-tuning data. Records are JSONL/CSV/Parquet rows in one of the formats "
    "summarization {dialogue, summary}, instruction {instruction, input, output}, chat "
    "{messages}, text {text} or preference {prompt, chosen, rejected}."
)


def register(subparsers: Any) -> None:
    commands = add_command_group(subparsers, "data", description=DESCRIPTION)
    _add_make(commands)
    _add_inspect(commands)


def _add_make(commands: Any) -> None:
    make = add_subcommand(
        commands,
        "make",
        _make,
        help="generate a bundled data set (dialogsum-synthetic, preferences-synthetic)",
        description=(
            "Generate a bundled data set and write train/validation/test JSONL and a README.md "
            "atomically. dialogsum-synthetic: synthetic two-person dialogues with DialogSum-style "
            "reference summaries. preferences-synthetic: {prompt, chosen, rejected} pairs from those "
            "dialogues, the reference summary preferred over a corrupted one (wrong name, wrong "
            "time, off topic, too long, truncated). Same --seed, same bytes."
        ),
    )
    make.add_argument("name", help="data set name (known: dialogsum-synthetic, preferences-synthetic)")
    make.add_argument("--n", type=int, default=2000, help="number of records in all splits (default 2000)")
    make.add_argument("--seed", type=int, default=0, help="random seed for content and split (default 0)")
    make.add_argument("--out", type=Path, help="output directory (default $LMF_HOME/data/NAME)")
    make.add_argument(
        "--fractions",
        default="0.8,0.1,0.1",
        help="train,validation[,test] fractions summing to 1 (default 0.8,0.1,0.1)",
    )
    add_json_flag(make)


def _add_inspect(commands: Any) -> None:
    inspect = add_subcommand(
        commands,
        "inspect",
        _inspect,
        help="show formatted examples and token-length statistics",
        description=(
            "Load FILE (a JSONL/CSV/Parquet file, a directory with split files, a bundled set "
            "name, or a datasets id), render N examples through the template, and report length "
            "statistics: tokens with --tokenizer (and how many exceed the maximum length), "
            "otherwise words."
        ),
    )
    inspect.add_argument("file", help="data file, directory, bundled set name or datasets id")
    inspect.add_argument(
        "--template",
        default="auto",
        help="summarize | alpaca | plain | chat | auto (default auto: chosen by record format)",
    )
    inspect.add_argument("--tokenizer", help="model name or directory whose tokenizer counts tokens")
    inspect.add_argument("-n", type=int, default=3, help="number of examples to show (default 3)")
    inspect.add_argument("--split", help="split to read from a directory or dataset (default train)")
    inspect.add_argument(
        "--max-length",
        type=int,
        help="maximum sequence length (default: the model config's, else 1024)",
    )
    add_json_flag(inspect)


def _parse_fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise InvalidInputError(f"--fractions must be comma-separated numbers, got {text!r}") from None


def _make(args: argparse.Namespace) -> int:
    paths = make(
        args.name, n=args.n, seed=args.seed, out_dir=args.out, fractions=_parse_fractions(args.fractions)
    )
    sizes = {name: sum(1 for _ in path.open(encoding="utf-8")) for name, path in paths.items()}
    folder = next(iter(paths.values())).parent
    return print_result(
        args,
        {"name": args.name, "dir": str(folder), "splits": sizes},
        lambda: _print_made(args.name, folder, sizes, paths),
    )


def _print_made(name: str, folder: Path, sizes: dict[str, int], paths: dict[str, Path]) -> None:
    print(f"{name}: wrote {folder}")
    for split, size in sizes.items():
        print(f"  {split:<10} {size:>6} records  {paths[split]}")


def _load_tokenizer(name_or_path: str) -> Any:
    return load_tokenizer(name_or_path)


def _default_max_length(tokenizer: Any) -> int:
    """The model config's context length (the tokenizer was loaded from the model's directory),
    else the tokenizer's own limit, else 1024."""
    import json

    config_file = Path(str(getattr(tokenizer, "name_or_path", "") or ".")) / "config.json"
    if config_file.is_file():
        return max_length_from_config(json.loads(config_file.read_text(encoding="utf-8")))
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    return DEFAULT_MAX_LENGTH


def _inspect(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise InvalidInputError("-n must be >= 0")
    records = load_records(args.file, split=args.split)
    tokenizer = _load_tokenizer(args.tokenizer) if args.tokenizer else None
    fmt, template = detect_format(records[0]), resolve_template(args.template, records[0])
    shown = [render(template, record, tokenizer) for record in records[: args.n]]
    summary: dict[str, Any] = {
        "file": args.file,
        "n_records": len(records),
        "format": fmt,
        "template": template,
    }
    if tokenizer is not None:
        max_length = args.max_length or _default_max_length(tokenizer)
        _, report = build_dataset(records, tokenizer, template, max_length, warn=False)
        stats = {
            "unit": "tokens",
            "min": report.min_tokens,
            "mean": report.mean_tokens,
            "p95": report.p95_tokens,
        }
        stats |= {"max": report.max_tokens, "max_length": max_length, "n_over_max_length": report.n_truncated}
    else:
        words = [sum(len(part.split()) for part in render(template, r)) for r in records]
        stats = {"unit": "words", **length_stats(words)}
    summary["stats"] = stats
    examples = [{"prompt": p, "completion": c} for p, c in shown]
    return print_result(args, {**summary, "examples": examples}, lambda: _print_inspection(summary, shown))


def _print_inspection(summary: dict[str, Any], shown: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    console = Console()
    console.print(
        f"{summary['file']}: {summary['n_records']} records, format {summary['format']}, "
        f"template {summary['template']}",
        markup=False,
        highlight=False,
    )
    for i, (prompt, completion) in enumerate(shown, start=1):
        body = Text(prompt, style="dim") + Text(completion, style="bold green")
        console.print(Panel(body, title=f"example {i} (dim: prompt, masked; green: completion, trained)"))
    stats = summary["stats"]
    table = Table(title=f"length in {stats['unit']}")
    columns = ["min", "mean", "p95", "max"] + (
        ["max_length", "n_over_max_length"] if "max_length" in stats else []
    )
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(*(f"{stats[c]:.1f}" if isinstance(stats[c], float) else str(stats[c]) for c in columns))
    console.print(table)
    if stats["unit"] == "words":
        console.print("pass --tokenizer MODEL for token counts and truncation", style="dim")
