"""`lmf quantize`: make a quantized copy of a model in the store, and measure what it cost."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from lmfoundry.cli.common import add_json_flag, print_result
from lmfoundry.cli.tracking import add_track_flag, track_cli_run
from lmfoundry.errors import InvalidInputError
from lmfoundry.quantize.gptq import DEFAULT_SEQ_LEN, DEFAULT_SEQUENCES, CalibrationSource
from lmfoundry.quantize.report import build_report, write_outputs
from lmfoundry.quantize.report_quality import QualitySettings
from lmfoundry.quantize.store_entry import create_quantized

_METHODS_HELP = "nf4, fp4, int8 (ours, torch), gguf-q4_0, gguf-q4_k_m, gguf-q5_k_m, gguf-q8_0 (llama.cpp)"
JSON_KEYS = ("bits_per_param", "size_bytes", "perplexity", "perplexity_fp32", "kl_divergence", "tokens_per_s")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quantize",
        help="quantize a model into the store (nf4/fp4/int8 or GGUF) and report size, quality, speed",
        description=(
            "lmf quantize MODEL --method METHOD [--double-quant] [--block-size 64] [--name NEW] [--report]\n"
            "  creates NEW (default MODEL-METHOD[-dq]) in the store; generate, chat, serve and finetune "
            "accept it like any other model.\n"
            "lmf quantize report MODEL [MODEL ...]\n"
            "  compares models against their fp32 base on held-out text (Python's language reference): "
            "file size, bits/param, perplexity, KL(fp32 || quant), greedy agreement, decode tokens/s and "
            "peak RSS (each model in its own process). `bnb-nf4:BASE` adds bitsandbytes NF4 as a baseline."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_method_options(parser)
    _add_gptq_options(parser)
    _add_report_options(parser)
    add_json_flag(parser)
    add_track_flag(parser)
    parser.set_defaults(handler=_run)


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model to quantize (store name, packaged name, directory), or `report`")
    parser.add_argument("more", nargs="*", metavar="MODEL", help="with `report`: the models to compare")
    parser.add_argument("--method", help=f"quantization method: {_METHODS_HELP}")
    parser.add_argument(
        "--double-quant",
        action="store_true",
        help="also quantize the block scales (QLoRA, ~0.37 bits/param less)",
    )
    parser.add_argument("--block-size", type=int, help="weights per scale for nf4/fp4/int8 (default 64)")
    parser.add_argument(
        "--quantize-embeddings",
        action="store_true",
        help="also quantize the input embedding and the output head (a tied head shares the codes; "
        "nf4/fp4/int8 only)",
    )
    parser.add_argument(
        "--embedding-method",
        choices=("nf4", "fp4", "int8"),
        help="format of the embedding and head (implies --quantize-embeddings; default int8: "
        "near-lossless, 8.1 bits/param with --double-quant)",
    )
    parser.add_argument(
        "--name", help="store name of the new model (default MODEL-METHOD[-dq][-emb-EMBEDDING_METHOD])"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing store entry of that name")
    parser.add_argument("--threads", type=int, help="threads for llama.cpp's quantizer (default: all cores)")


def _add_gptq_options(parser: argparse.ArgumentParser) -> None:
    gptq = parser.add_argument_group(
        "GPTQ (nf4/fp4/int8)",
        "Choose each code so that the layer's outputs on calibration text stay close to fp32,\n"
        "instead of rounding every weight on its own. Same file format, size and speed; nf4 + double\n"
        "quant on SmolLM2-135M: perplexity +5-9% instead of +28% (docs/quantization.md). About a\n"
        "minute on the packaged model; the codes then differ from bitsandbytes' round-to-nearest ones.",
    )
    gptq.add_argument(
        "--gptq", action="store_true", help="quantize with GPTQ (adds -gptq to the default name)"
    )
    gptq.add_argument(
        "--calibration",
        metavar="FILE",
        help="UTF-8 text to calibrate on (default: Python's language reference minus the report's "
        "held-out text)",
    )
    gptq.add_argument(
        "--calibration-samples",
        type=int,
        default=DEFAULT_SEQUENCES,
        help=f"token windows taken evenly from the text (default {DEFAULT_SEQUENCES})",
    )
    gptq.add_argument(
        "--calibration-length",
        type=int,
        default=DEFAULT_SEQ_LEN,
        help=f"tokens per window (default {DEFAULT_SEQ_LEN})",
    )


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("report")
    group.add_argument(
        "--report", action="store_true", help="after quantizing, compare the new model with MODEL"
    )
    group.add_argument("--reference", help="fp32 model to compare against (default: the base of the models)")
    group.add_argument(
        "--tokens", type=int, default=2048, help="held-out tokens scored per model (default 2048)"
    )
    group.add_argument("--window", type=int, default=512, help="tokens per forward pass (default 512)")
    group.add_argument(
        "--new-tokens", type=int, default=32, help="tokens decoded for the speed test (default 32)"
    )
    group.add_argument("--no-perf", action="store_true", help="skip the speed / peak-RSS subprocesses")
    group.add_argument("--out", default=".", help="folder for quantize_report.json and .png (default .)")


def _run(args: argparse.Namespace) -> int:
    if args.model == "report":
        return _report(args, list(args.more))
    if args.more:
        raise InvalidInputError(
            f"unexpected arguments {' '.join(args.more)} (to compare models use `lmf quantize report`)"
        )
    if not args.method:
        raise InvalidInputError("--method is required (" + _METHODS_HELP + ")")
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("quantizing") as status:
        created = create_quantized(
            args.model,
            args.method,
            double_quant=args.double_quant,
            block_size=args.block_size,
            name=args.name,
            force=args.force,
            threads=args.threads,
            on_step=lambda msg: status.update(msg),
            embeddings=args.embedding_method or ("int8" if args.quantize_embeddings else None),
            calibration=_calibration(args),
        )
    quant = created["quantization"]
    summary: dict[str, Any] = {
        **{k: None for k in JSON_KEYS},
        **created,
        "bits_per_param": quant["bits_per_param"],
        "bits_per_param_overall": quant["bits_per_param_overall"],
    }
    report_files: list[Path] = []
    if args.report:
        rows, report_files = _build(args, [args.model, created["name"]], args.model, console)
        summary.update({k: v for k, v in rows[-1].items() if k not in ("name", "method")})
        summary["report"] = rows
    summary["run_id"] = _track_quantize(args, created, summary, report_files)
    return print_result(
        args, summary, lambda: _print_created(created, summary["report"] if args.report else None)
    )


def _print_created(created: dict[str, Any], report: list[dict[str, Any]] | None) -> None:
    from rich.console import Console

    quant = created["quantization"]
    Console().print(
        f"created [bold]{created['name']}[/] ({created['method']}): {quant['bits_per_param']:.3f} bits/param in the "
        f"quantized layers, {quant['bits_per_param_overall']:.2f} overall, {created['size_bytes'] / 1e6:.1f} MB"
    )
    if report is not None:
        _print_table(report)


def _calibration(args: argparse.Namespace) -> CalibrationSource | None:
    if not args.gptq:
        if args.calibration:
            raise InvalidInputError("--calibration is for --gptq (add --gptq to calibrate)")
        return None
    return CalibrationSource(args.calibration, args.calibration_samples, args.calibration_length)


def _report(args: argparse.Namespace, models: list[str]) -> int:
    if not models:
        raise InvalidInputError("name at least one model: lmf quantize report MODEL [MODEL ...]")
    from rich.console import Console

    rows, files = _build(args, models, args.reference, Console(stderr=True))
    params = {"models": models, "reference": args.reference, "tokens": args.tokens, "window": args.window}
    metrics = {_metric_key(row["name"]): {k: row.get(k) for k in _REPORT_METRICS} for row in rows}
    run_id = track_cli_run(args, "quantize", params, metrics, files, run_name="cli:report")
    return print_result(args, {"models": rows, "run_id": run_id}, lambda: _print_table(rows))


_REPORT_METRICS = ("size_bytes", "bits_per_param", "bits_per_param_overall", "perplexity",
                   "perplexity_change", "kl_divergence", "greedy_agreement", "tokens_per_s", "peak_rss_bytes")  # fmt: skip


def _metric_key(name: str) -> str:
    """A model name as an MLflow metric prefix: a file path by its file name (MLflow refuses names
    that resolve to other paths, e.g. absolute ones), other characters MLflow rejects replaced."""
    if "/" in name:
        name = Path(name).name
    return re.sub(r"[^A-Za-z0-9_. -]", "_", name)


def _track_quantize(
    args: argparse.Namespace, created: dict[str, Any], summary: dict[str, Any], files: list[Path]
) -> str | None:
    """Log the quantization in MLflow (experiment lmf-quantize) unless --no-track."""
    quant = created["quantization"]
    params = {"model": args.model, "method": created["method"], "name": created["name"],
              "block_size": quant.get("block_size", args.block_size),
              "double_quant": quant.get("double_quant", args.double_quant),
              "embeddings": quant.get("embeddings")}  # fmt: skip
    metrics = {k: summary.get(k) for k in dict.fromkeys((*JSON_KEYS, *_REPORT_METRICS))}
    return track_cli_run(args, "quantize", params, metrics, files, run_name=f"cli:{created['name']}")


def _build(
    args: argparse.Namespace, models: list[str], reference: str | None, console: Any
) -> tuple[list[dict[str, Any]], list[Path]]:
    settings = QualitySettings(tokens=args.tokens, window=args.window)
    with console.status("report") as status:
        rows = build_report(
            models,
            reference=reference,
            settings=settings,
            perf=not args.no_perf,
            new_tokens=args.new_tokens,
            step=lambda msg: status.update(msg),
        )
    paths = write_outputs(rows, Path(args.out))
    console.print(f"wrote {paths['json']} and {paths['png']}")
    return rows, [paths["json"], paths["png"]]


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    table.add_column("model", no_wrap=True)
    for column in (
        "method",
        "size MB",
        "bits/p lin",
        "bits/p all",
        "ppl",
        "Δppl",
        "KL",
        "agree",
        "tok/s",
        "peak RSS MB",
    ):
        table.add_column(column, justify="left" if column == "method" else "right", no_wrap=True)
    for row in rows:
        rss = row.get("peak_rss_bytes")
        table.add_row(
            row["name"],
            row["method"],
            _fmt((row.get("size_bytes") or 0) / 1e6, ".1f"),
            _fmt(row.get("bits_per_param"), ".3f"),
            _fmt(row.get("bits_per_param_overall"), ".2f"),
            _fmt(row["perplexity"], ".3f"),
            _fmt(100 * row["perplexity_change"], "+.1f") + "%",
            _fmt(row["kl_divergence"], ".4f"),
            _fmt(100 * row["greedy_agreement"], ".1f") + "%",
            _fmt(row.get("tokens_per_s"), ".1f"),
            _fmt(rss / 1e6 if rss else None, ".0f"),
        )
    console = Console()
    (console if console.is_terminal else Console(width=200)).print(table)
