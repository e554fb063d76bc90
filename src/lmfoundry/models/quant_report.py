"""Quality report of quantized models against their fp32 base: `lmf quantize report`.

Quality (one process, models loaded one at a time): the held-out text is a fixed selection of
Python's own language-reference topics (`pydoc_data.topics`), tokenized once with the reference's
HF tokenizer; the same token ids go to every model (GGUF models through llama-cpp-python with
`logits_all=True`), cut into independent windows of `window` tokens. Per predicted position we
compare the next-token distribution with the fp32 reference's:

- perplexity = exp(mean NLL of the actual next token),
- KL(p_fp32 || p_quant) = sum_v p(v) (log p(v) - log q(v)), averaged over positions,
- greedy agreement = share of positions where both argmaxes are the same token.

Speed and memory (one fresh interpreter per model, `python -m lmfoundry.models.quant_report
perf`): load, greedy-decode `new_tokens` tokens with the engine, report tokens/s and VmHWM. The
peak is read right after decoding, before anything else runs, so it is the model's inference
peak: load + prefill + decode. `model_rss_bytes` subtracts the RSS measured after importing the
backend's libraries (torch+transformers, or llama_cpp) and before loading; `model_only_rss_bytes`
subtracts the whole runtime (those libraries plus the architecture's transformers model class and
our engine, all imported before any weights load), i.e. the weights' and activations' own share.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import InvalidInputError, LmfError

if TYPE_CHECKING:
    import torch

TOPICS = (
    "assignment", "augassign", "class", "compound", "exceptions", "execmodel", "for", "function",
    "if", "import", "lambda", "naming", "raise", "return", "try", "while", "with", "yield",
    "context-managers", "comparisons", "calls", "customization", "typesseq", "typesmapping",
)  # fmt: skip
"""A fixed selection of `pydoc_data.topics`, concatenated in this order: the held-out text."""
BNB_PREFIX = "bnb-nf4:"
"""`bnb-nf4:MODEL`: MODEL loaded by transformers with bitsandbytes NF4 (the named baseline)."""
PERF_PROMPT = "The Python language reference describes the syntax and core semantics of the language. "


def heldout_text(min_chars: int = 0) -> str:
    """The topics above joined by blank lines (all of them; `min_chars` only checks length)."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[t].strip() for t in TOPICS if t in topics)
    if len(text) < min_chars:
        raise LmfError(f"the held-out corpus has only {len(text)} characters")
    return text


def heldout_ids(tokenizer: Any, tokens: int) -> list[int]:
    """The first `tokens` ids of the held-out text (no special tokens added)."""
    if tokens < 2:
        raise InvalidInputError(f"--tokens must be at least 2, got {tokens}")
    ids = list(tokenizer(heldout_text(), add_special_tokens=False)["input_ids"])
    if len(ids) < tokens:
        raise InvalidInputError(f"--tokens {tokens} is more than the held-out text has ({len(ids)} tokens)")
    return ids[:tokens]


def windows(ids: list[int], window: int) -> list[list[int]]:
    """Non-overlapping windows; a last piece shorter than 2 tokens predicts nothing and is dropped."""
    if window < 2:
        raise InvalidInputError(f"--window must be at least 2, got {window}")
    return [ids[i : i + window] for i in range(0, len(ids), window) if len(ids[i : i + window]) >= 2]


# ---- metrics (pure functions on log-probabilities) ----


@dataclass
class Totals:
    """Running sums over predicted positions."""

    positions: int = 0
    nll: float = 0.0
    kl: float = 0.0
    agree: int = 0

    def add(self, ref_logp: torch.Tensor, logp: torch.Tensor, targets: torch.Tensor) -> None:
        self.positions += int(targets.numel())
        self.nll += float(-logp.gather(1, targets[:, None]).sum())
        self.kl += float(kl_per_position(ref_logp, logp).sum())
        self.agree += int((ref_logp.argmax(-1) == logp.argmax(-1)).sum())

    def metrics(self) -> dict[str, float]:
        import math

        n = max(self.positions, 1)
        return {
            "perplexity": math.exp(self.nll / n),
            "nll": self.nll / n,
            "kl_divergence": self.kl / n,
            "greedy_agreement": self.agree / n,
            "positions": self.positions,
        }


def kl_per_position(ref_logp: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p) for each row of two [positions, vocab] log-probability tensors."""
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1).clamp_min(0.0)


def log_probs(logits: Any) -> torch.Tensor:
    import torch

    tensor = torch.as_tensor(logits, dtype=torch.float32)
    return torch.log_softmax(tensor, dim=-1)


# ---- scorers: ids -> [len(ids), vocab] logits ----

Scorer = Callable[[list[int]], Any]


@dataclass
class ModelInfo:
    """What kind of model a report entry is and where its weights are."""

    spec: str
    kind: str
    """fp32, torch (our nf4/fp4/int8), gguf or bnb."""
    method: str
    weights: Path | None
    quantization: dict[str, Any] | None


def describe(spec: str) -> ModelInfo:
    """Classify a report entry without loading weights."""
    from lmfoundry.models.load import resolve
    from lmfoundry.models.quantize_store import entry_format

    if spec.startswith(BNB_PREFIX):
        return ModelInfo(spec, "bnb", "bnb-nf4", None, None)
    resolved = resolve(spec)
    fmt = entry_format(resolved.quantization)
    if fmt == "gguf" or resolved.kind == "gguf":
        quant = resolved.quantization or {"method": "gguf"}
        return ModelInfo(spec, "gguf", str(quant.get("method")), resolved.gguf, resolved.quantization)
    folder = Path(resolved.checkpoint())
    weights = folder / "model.safetensors"
    if fmt == "torch":
        return ModelInfo(spec, "torch", str(resolved.quantization["method"]), weights, resolved.quantization)  # type: ignore[index]
    return ModelInfo(spec, "fp32", "fp32", weights if weights.is_file() else None, None)


def torch_scorer(model: Any) -> Scorer:
    def score(ids: list[int]) -> Any:
        import torch

        with torch.inference_mode():
            return model(torch.tensor([ids])).logits[0].float()

    return score


def load_bnb_nf4(base: str) -> tuple[Any, Any]:
    """transformers + bitsandbytes NF4 (the reference implementation) on the base checkpoint."""
    from lmfoundry.models.load import load_tokenizer, resolve
    from lmfoundry.plugins import require

    require("bitsandbytes", extra="quantize")
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    checkpoint = resolve(base).checkpoint()
    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    try:
        model = AutoModelForCausalLM.from_pretrained(
            checkpoint, quantization_config=config, device_map="cpu", dtype=torch.float32
        )
    except (RuntimeError, ValueError, ImportError) as exc:
        raise LmfError(f"bitsandbytes NF4 does not load here: {exc}".splitlines()[0]) from exc
    return model.eval(), load_tokenizer(base)


def bnb_linear_sizes(model: Any) -> tuple[int, int]:
    """(weights, bytes) of bitsandbytes' Linear4bit layers: packed codes + absmax (+ nested stats)."""
    params = nbytes = 0
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is None:
            continue
        params += module.in_features * module.out_features
        nbytes += (
            module.weight.numel() * module.weight.element_size()
            + state.absmax.numel() * state.absmax.element_size()
        )
        if getattr(state, "state2", None) is not None:
            nbytes += state.state2.absmax.numel() * state.state2.absmax.element_size() + 4
    return params, nbytes


@contextlib.contextmanager
def open_scorer(info: ModelInfo, window: int) -> Iterator[tuple[Scorer, dict[str, Any]]]:
    """Load one model for scoring; yields (scorer, extra facts) and frees the model afterwards."""
    import gc

    extra: dict[str, Any] = {}
    holder: list[Any] = []
    if info.kind == "gguf":
        yield from _gguf_scorer(info, window, extra)
        return
    if info.kind == "bnb":
        model, _ = load_bnb_nf4(info.spec.removeprefix(BNB_PREFIX))
        params, nbytes = bnb_linear_sizes(model)
        extra["bits_per_param"] = 8.0 * nbytes / params if params else 0.0
        extra["size_bytes"] = sum(
            t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]
        )
    else:
        from lmfoundry.models.load import load_hf_model

        model, _ = load_hf_model(info.spec)
    holder.append(model)
    try:
        yield torch_scorer(model), extra
    finally:
        holder.clear()
        del model
        gc.collect()


def _gguf_scorer(
    info: ModelInfo, window: int, extra: dict[str, Any]
) -> Iterator[tuple[Scorer, dict[str, Any]]]:
    import os

    import numpy as np

    from lmfoundry.plugins import require

    llama_cpp = require("llama_cpp", extra="llamacpp", package="llama-cpp-python")
    llm = llama_cpp.Llama(
        model_path=str(info.weights),
        n_ctx=window,
        n_batch=window,
        n_ubatch=window,
        logits_all=True,
        n_threads=os.cpu_count() or 2,
        verbose=False,
    )
    extra["llama"] = llm

    def score(ids: list[int]) -> Any:
        llm.reset()
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)

    try:
        yield score, extra
    finally:
        extra.pop("llama", None)
        llm.close()


def tokenizer_agrees(llm: Any, text: str, ids: list[int]) -> bool:
    """Does the GGUF's own tokenizer give the HF ids for the held-out text? (We feed HF ids anyway.)"""
    own = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    return own[: len(ids)] == ids


@dataclass
class QualitySettings:
    tokens: int = 2048
    """Held-out tokens scored per model."""
    window: int = 512
    """Tokens per independent forward pass (each window starts with no context)."""


def evaluate_quality(
    reference: str, specs: list[str], settings: QualitySettings, step: Callable[[str], None] | None = None
) -> dict[str, dict[str, Any]]:
    """Perplexity, KL vs the reference and greedy agreement for the reference and every spec."""
    import torch

    from lmfoundry.models.load import load_tokenizer

    step = step or (lambda _m: None)
    ids = heldout_ids(load_tokenizer(reference), settings.tokens)
    pieces = windows(ids, settings.window)
    targets = [torch.tensor(p[1:]) for p in pieces]
    step(f"scoring the reference {reference} on {len(ids)} tokens")
    ref_logps = []
    with open_scorer(describe(reference), settings.window) as (score, _extra):
        for piece in pieces:
            ref_logps.append(log_probs(score(piece))[:-1])
    results: dict[str, dict[str, Any]] = {}
    reference_totals = Totals()
    for ref_logp, target in zip(ref_logps, targets, strict=True):
        reference_totals.add(ref_logp, ref_logp, target)
    results[reference] = reference_totals.metrics()
    for spec in specs:
        if spec == reference:
            continue
        step(f"scoring {spec}")
        totals = Totals()
        with open_scorer(describe(spec), settings.window) as (score, extra):
            for piece, ref_logp, target in zip(pieces, ref_logps, targets, strict=True):
                totals.add(ref_logp, log_probs(score(piece))[:-1], target)
            llm = extra.pop("llama", None)
            results[spec] = {**totals.metrics(), **extra}
            if llm is not None:
                results[spec]["tokenizer_match"] = tokenizer_agrees(llm, heldout_text(), ids)
    return results


# ---- speed and memory, one fresh interpreter per model ----


def measure_perf(
    spec: str, new_tokens: int = 32, timeout_s: float = 900, threads: int | None = None
) -> dict[str, Any]:
    """Run `perf` for one model in a fresh interpreter and return its JSON result.

    `threads` fixes the compute threads (torch and llama.cpp alike; default: all cores). On a
    CPU shared with other jobs, one thread avoids the fork-join stalls that make many small ops
    (our band-wise dequantization) tens of times slower.
    """
    cmd = [sys.executable, "-m", "lmfoundry.models.quant_report", "perf", spec]
    cmd += ["--new-tokens", str(new_tokens)] + (["--threads", str(threads)] if threads else [])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LmfError(f"measuring {spec} took longer than {timeout_s:.0f} s") from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise LmfError(f"measuring {spec} failed: {tail}")
    return dict(json.loads(lines[-1]))


def _perf(spec: str, new_tokens: int, threads: int | None = None) -> dict[str, Any]:
    """Load, warm up, decode; peak RSS is read straight after decoding."""
    from lmfoundry.models.memory_measure import current_rss_bytes, peak_rss_bytes

    info = describe(spec)
    phases = _import_runtime(info)
    baseline = phases["libraries"]
    if threads and info.kind != "gguf":
        import torch

        torch.set_num_threads(threads)
    start = time.perf_counter()
    model = _load_for_decode(info, threads)
    load_s = time.perf_counter() - start
    loaded = current_rss_bytes()
    model.generate(PERF_PROMPT, temperature=0.0, max_new_tokens=4)
    result = model.generate(PERF_PROMPT, temperature=0.0, max_new_tokens=new_tokens)
    peak = peak_rss_bytes()
    return {
        "spec": spec,
        "backend": result.backend,
        "tokens_per_s": result.tokens_per_s,
        "completion_tokens": result.completion_tokens,
        "load_s": load_s,
        "peak_rss_bytes": peak,
        "baseline_rss_bytes": baseline,
        "model_rss_bytes": peak - baseline,
        "runtime_rss_bytes": phases["runtime"],
        "model_only_rss_bytes": peak - phases["runtime"],
        "rss_after_load_bytes": loaded,
        "rss_phases": phases,
        "threads": threads,
    }


def _import_runtime(info: ModelInfo) -> dict[str, int]:
    """RSS after each import step, before any weights load.

    `libraries` = torch + transformers (or llama_cpp); `runtime` adds what loading any model of
    this architecture pulls in regardless of its weights (the transformers model class, which
    imports torch.distributed/dynamo/sympy, and our engine), so `peak - runtime` is the weights'
    and activations' share.
    """
    from lmfoundry.models.memory_measure import current_rss_bytes

    phases = {"python": current_rss_bytes()}
    if info.kind == "gguf":
        import llama_cpp  # noqa: F401  (baseline includes the library, not the model)

        phases["libraries"] = current_rss_bytes()
        import lmfoundry.generate.engine  # noqa: F401
    else:
        import torch  # noqa: F401

        phases["torch"] = current_rss_bytes()
        import transformers

        phases["libraries"] = current_rss_bytes()
        _import_model_class(info, transformers)
        import lmfoundry.generate.engine  # noqa: F401
        import lmfoundry.generate.hf_backend  # noqa: F401
    phases["runtime"] = current_rss_bytes()
    return phases


def _import_model_class(info: ModelInfo, transformers: Any) -> None:
    """Import the architecture's modeling module (transformers imports it lazily on first use)."""
    from lmfoundry.models.load import resolve

    spec = info.spec.removeprefix(BNB_PREFIX)
    config_path = Path(resolve(spec).checkpoint()) / "config.json"
    if not config_path.is_file():
        return
    for arch in json.loads(config_path.read_text(encoding="utf-8")).get("architectures") or []:
        getattr(transformers, arch, None)


def _load_for_decode(info: ModelInfo, threads: int | None = None) -> Any:
    from lmfoundry.generate.engine import LoadedModel, load_model

    if info.kind == "bnb":
        from lmfoundry.generate.hf_backend import TransformersBackend

        model, tokenizer = load_bnb_nf4(info.spec.removeprefix(BNB_PREFIX))
        return LoadedModel(info.spec, TransformersBackend(model, tokenizer))
    backend = "llama_cpp" if info.kind == "gguf" else "transformers"
    return load_model(info.spec, backend=backend, threads=threads)


# ---- the report ----


def reference_for(models: list[str]) -> str:
    """The first unquantized model listed, else the `base` of the first quantized one."""
    for spec in models:
        info = describe(spec)
        if info.kind == "fp32":
            return spec
    from lmfoundry.models.load import resolve

    for spec in models:
        if spec.startswith(BNB_PREFIX):
            return spec.removeprefix(BNB_PREFIX)
        manifest = resolve(spec).manifest
        if manifest and manifest.base:
            return manifest.base
    raise InvalidInputError("no fp32 reference: list the unquantized model too, or pass --reference")


def size_facts(info: ModelInfo, total_params: int) -> dict[str, Any]:
    """File size and bits/param (quantized linears and overall) from the files, without loading."""
    from lmfoundry.models.gguf_quantize import gguf_summary
    from lmfoundry.models.quantize_store import safetensors_data_bytes

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
    from lmfoundry.models import store

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
    from lmfoundry.fsutil import atomic_write_text

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


def main(argv: list[str] | None = None) -> int:
    """`python -m lmfoundry.models.quant_report perf SPEC`: one model's speed and peak RSS as JSON."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lmfoundry.models.quant_report")
    sub = parser.add_subparsers(dest="command", required=True)
    perf = sub.add_parser("perf", help="decode speed and peak RSS of one model")
    perf.add_argument("spec")
    perf.add_argument("--new-tokens", type=int, default=32)
    perf.add_argument("--threads", type=int, help="compute threads (default: all cores)")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(_perf(args.spec, args.new_tokens, args.threads)))
    except LmfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
