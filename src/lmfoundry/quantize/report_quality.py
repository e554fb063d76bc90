"""Quality half of the quantization report: perplexity, KL and greedy agreement against fp32.

One process, models loaded one at a time: the held-out text (`heldout.py`) is tokenized once
with the reference's HF tokenizer; the same token ids go to every model (GGUF models through
llama-cpp-python with `logits_all=True`), cut into independent windows of `window` tokens. Per
predicted position we compare the next-token distribution with the fp32 reference's:

- perplexity = exp(mean NLL of the actual next token),
- KL(p_fp32 || p_quant) = sum_v p(v) (log p(v) - log q(v)), averaged over positions,
- greedy agreement = share of positions where both argmaxes are the same token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import LmfError
from lmfoundry.models.load import load_hf_model, load_tokenizer, resolve
from lmfoundry.models.store import weights_format
from lmfoundry.plugins import require
from lmfoundry.quantize.heldout import heldout_ids, heldout_text, windows

if TYPE_CHECKING:
    import torch


BNB_PREFIX = "bnb-nf4:"
"""`bnb-nf4:MODEL`: MODEL loaded by transformers with bitsandbytes NF4 (the named baseline)."""


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

    if spec.startswith(BNB_PREFIX):
        return ModelInfo(spec, "bnb", "bnb-nf4", None, None)
    resolved = resolve(spec)
    fmt = weights_format(resolved.quantization)
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
