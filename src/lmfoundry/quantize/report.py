"""Quality report of quantized models against their fp32 base: `lmf quantize report`.

One row per model (the fp32 reference first): file size and bits/param read from the files,
quality against the reference on held-out text (`report_quality.py`), decode speed and peak RSS
in a fresh interpreter per model (`report_speed.py`), written as JSON and a plot.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.fsutil import atomic_write_text
from lmfoundry.models import store
from lmfoundry.models.convert import gguf_summary
from lmfoundry.models.load import resolve
from lmfoundry.quantize.report_quality import (
    BNB_PREFIX,
    ModelInfo,
    QualitySettings,
    describe,
    evaluate_quality,
)
from lmfoundry.quantize.report_speed import measure_perf
from lmfoundry.quantize.store_entry import safetensors_data_bytes


def reference_for(models: list[str]) -> str:
    """The first unquantized model listed, else the `base` of the first quantized one."""
    for spec in models:
        info = describe(spec)
        if info.kind == "fp32":
            return spec

    for spec in models:
        if spec.startswith(BNB_PREFIX):
            return spec.removeprefix(BNB_PREFIX)
        manifest = resolve(spec).manifest
        if manifest and manifest.base:
            return manifest.base
    raise InvalidInputError("no fp32 reference: list the unquantized model too, or pass --reference")


def size_facts(info: ModelInfo, total_params: int) -> dict[str, Any]:
    """File size and bits/param (quantized linears and overall) from the files, without loading."""

    if info.kind == "bnb":
        return {}
    if info.weights is None or not info.weights.is_file():
        raise LmfError(f"{info.spec}: weights file not found")
    size = info.weights.stat().st_size
    if info.kind == "gguf":
        summary = gguf_summary(info.weights)
        return {"size_bytes": size, "bits_per_param": summary["bits_per_param"],
                "bits_per_param_overall": 8.0 * summary["tensor_bytes"] / total_params}  # fmt: skip
    overall = 8.0 * safetensors_data_bytes(info.weights) / total_params
    linear = float(info.quantization["bits_per_param"]) if info.quantization else 32.0
    return {"size_bytes": size, "bits_per_param": linear, "bits_per_param_overall": overall}


def build_report(
    models: list[str],
    *,
    reference: str | None = None,
    settings: QualitySettings | None = None,
    perf: bool = True,
    new_tokens: int = 32,
    step: Callable[[str], None] | None = None,
    perf_threads: int | None = None,
) -> list[dict[str, Any]]:
    """One row per model (reference first): size, bits/param, quality vs fp32, speed, peak RSS."""

    step = step or (lambda _m: None)
    reference = reference or reference_for(models)
    ref_info = describe(reference)
    if ref_info.kind != "fp32" or ref_info.weights is None:
        raise InvalidInputError(f"the reference {reference!r} must be an unquantized transformers model")
    total_params, _ = store.safetensors_summary(ref_info.weights.parent)
    specs = [reference, *[m for m in dict.fromkeys(models) if m != reference]]
    quality = evaluate_quality(reference, specs, settings or QualitySettings(), step)
    rows = []
    for spec in specs:
        info = describe(spec)
        row: dict[str, Any] = {
            "name": spec,
            "method": info.method,
            "kind": info.kind,
            "parameters": total_params,
        }
        row.update(size_facts(info, total_params))
        row.update(quality[spec])
        if row.get("size_bytes") and "bits_per_param_overall" not in row:
            row["bits_per_param_overall"] = 8.0 * row["size_bytes"] / total_params  # in-memory size (bnb)
        row["perplexity_fp32"] = quality[reference]["perplexity"]
        row["perplexity_change"] = row["perplexity"] / row["perplexity_fp32"] - 1.0
        if perf:
            step(f"measuring decode speed and peak RSS of {spec} (fresh process)")
            facts = measure_perf(spec, new_tokens, threads=perf_threads)
            row.update(
                {
                    k: facts[k]
                    for k in (
                        "tokens_per_s",
                        "load_s",
                        "peak_rss_bytes",
                        "model_rss_bytes",
                        "backend",
                        "runtime_rss_bytes",
                        "model_only_rss_bytes",
                        "rss_after_load_bytes",
                    )
                }
            )
        rows.append(row)
    return rows


def write_outputs(rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """report.json and report.png (perplexity and KL against bits/param) in `out_dir`."""

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "quantize_report.json", out_dir / "quantize_report.png"
    atomic_write_text(json_path, json.dumps({"models": rows}, indent=2, default=str) + "\n")
    plot_report(rows, png_path)
    return {"json": json_path, "png": png_path}


def plot_report(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = report_figure(rows)
    tmp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def report_figure(rows: list[dict[str, Any]]) -> Any:
    """Perplexity and KL against bits/param, one labelled point per model (the first is the reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, axis_label in (
        (axes[0], "perplexity", "perplexity"),
        (axes[1], "kl_divergence", "mean KL(fp32 || quant)"),
    ):
        for i, row in enumerate(rows):
            x = row.get("bits_per_param_overall")
            if x is None:
                continue
            name = row["name"].removeprefix(rows[0]["name"] + "-") if i else f"{row['name']} (reference)"
            ax.scatter(x, row[key])
            ax.annotate(name, (x, row[key]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("bits per parameter (all weights, file bytes)")
        ax.set_ylabel(axis_label)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("symlog", linthresh=1e-3)
    fig.suptitle("quantization: quality vs size")
    fig.tight_layout()
    return fig
