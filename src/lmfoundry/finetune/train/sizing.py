"""Sizing a pretraining run before starting it: tokens, FLOPs, memory and wall time.

For N parameters: Chinchilla-optimal data is 20·N tokens (Hoffmann et al. 2022), training costs
6·N·D FLOPs, the memory is the planner's full-training estimate (`memory/planner.py`) for the
config's batch and context, and the wall time is D / throughput, where the throughput is

- measured: a few real optimizer steps of the config's model on this machine (random tokens, the
  config's batch and context, the training loop's chunked loss); or
- from a device spec: `device_tflops` x `mfu` / 6·N (an accelerator this machine does not have);
- for a bare parameter count without a device spec: this machine's measured matmul peak x `mfu`.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.finetune.config import PRETRAIN_STAGES, FinetuneConfig, load_finetune_config
from lmfoundry.finetune.train.flops import CHINCHILLA_TOKENS_PER_PARAM, peak_flops, train_flops
from lmfoundry.finetune.train.loss import chunked_loss
from lmfoundry.finetune.train.methods import prepare_model
from lmfoundry.finetune.train.pretrain import compute_params, llama_from_shape, llama_shape
from lmfoundry.memory.planner import Workload, estimate, facts_from_config, model_facts
from lmfoundry.models.load import load_hf_model, resolve

DEFAULT_MFU = 0.4
"""Assumed model FLOPs utilisation for a device spec (well-tuned GPU training reaches 0.3-0.5)."""
_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


@dataclass
class PretrainSizing:
    params: int
    """N of 6·N·D (non-embedding-lookup parameters of the model)."""
    chinchilla_tokens: int
    tokens: int
    """D: the tokens sized for (Chinchilla-optimal unless given)."""
    flops: float
    tokens_per_s: float | None
    throughput: str
    """Where tokens_per_s comes from (measured here, or a device spec)."""
    seconds: float | None
    memory_bytes: int | None = None
    memory: dict[str, int] = field(default_factory=dict)
    shape: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_param_count(text: str) -> int:
    """`12M`, `1.5B`, `135e6` or `125000000` -> parameters."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmbgt]?)\s*", text.lower())
    if not match:
        raise InvalidInputError(
            f"--pretrain {text!r} is neither a config file nor a parameter count like 20M or 1.5B"
        )
    value = int(float(match.group(1)) * _SUFFIXES[match.group(2)])
    if value < 1:
        raise InvalidInputError(f"--pretrain parameter count must be >= 1, got {text!r}")
    return value


def _config_model(config: FinetuneConfig) -> tuple[Any, dict[str, Any]]:
    """(a model of the config's shape, its config.json dict)."""
    if config.stage == "pretrain":
        vocab = config.pretrain.vocab_size  # a trained tokenizer's, at most; a named one's exactly
        if config.pretrain.tokenizer:
            from transformers import AutoTokenizer

            vocab = len(AutoTokenizer.from_pretrained(resolve(config.pretrain.tokenizer).checkpoint()))
        shape = llama_shape(config, vocab)
        return llama_from_shape(shape, config.training.seed), shape
    model, _ = load_hf_model(config.model.name)
    return model, model.config.to_dict()


def measure_tokens_per_s(model: Any, vocab_size: int, seq_len: int, batch: int, steps: int) -> float:
    """Training tokens/s of `model` over `steps` AdamW steps (after one warm-up step)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (batch, seq_len), generator=generator)
    data = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()

    def step() -> None:
        loss, _ = chunked_loss(model, data)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch * seq_len / (time.perf_counter() - started)


def size_config(
    path: Path, tokens: int | None, device_tflops: float | None, mfu: float, steps: int
) -> PretrainSizing:
    """Sizing of a `stage: pretrain | continued-pretraining` config, its throughput measured here
    (unless `device_tflops` is given)."""
    config = load_finetune_config(path)
    if config.stage not in PRETRAIN_STAGES:
        raise InvalidInputError(
            f"{path} is a stage {config.stage} config; --pretrain sizes {' or '.join(PRETRAIN_STAGES)}"
        )
    seq, batch = config.data.max_length, config.training.batch_size
    model, shape = _config_model(config)
    model = prepare_model(model, config.method, 1, config.training.seed)
    n = compute_params(model)
    facts = facts_from_config(shape) if config.stage == "pretrain" else model_facts(config.model.name)
    mode = "full" if config.method.name == "full" else "lora"
    planned = estimate(facts, Workload(mode=mode, seq_len=seq, batch=batch))
    if device_tflops:
        rate, source = device_rate(n, device_tflops, mfu)
    else:
        rate = measure_tokens_per_s(model, int(shape["vocab_size"]), seq, batch, steps)
        source = f"measured here: {steps} steps of batch {batch} x {seq} tokens"
    sizing = _sizing(n, tokens, rate, source)
    sizing.memory_bytes, sizing.memory = planned.total_bytes, dict(planned.components)
    sizing.shape = f"{facts.num_layers} layers x {facts.hidden_size}, vocab {facts.vocab_size}, {mode}, batch {batch} x {seq}"
    return sizing


def device_rate(n: int, device_tflops: float, mfu: float) -> tuple[float, str]:
    if device_tflops <= 0 or not 0 < mfu <= 1:
        raise InvalidInputError("--device-tflops must be > 0 and --mfu in (0, 1]")
    return device_tflops * 1e12 * mfu / train_flops(n, 1), f"{device_tflops:g} TFLOP/s x mfu {mfu:g}"


def size_count(n: int, tokens: int | None, device_tflops: float | None, mfu: float) -> PretrainSizing:
    """Sizing of a bare parameter count: no shape, so no memory; time at a device spec or this
    machine's matmul peak, both times `mfu`."""
    if device_tflops:
        rate, source = device_rate(n, device_tflops, mfu)
    else:
        peak = peak_flops("fp32")
        rate, source = (
            peak * mfu / train_flops(n, 1),
            f"this machine's fp32 matmul peak {peak / 1e12:.3f} TFLOP/s x mfu {mfu:g}",
        )
    sizing = _sizing(n, tokens, rate, source)
    sizing.notes.append("memory needs the model's shape: pass a pretrain config instead of a count")
    return sizing


def _sizing(n: int, tokens: int | None, rate: float, source: str) -> PretrainSizing:
    chinchilla = CHINCHILLA_TOKENS_PER_PARAM * n
    d = tokens or chinchilla
    if d < 1:
        raise InvalidInputError(f"--tokens must be >= 1, got {d}")
    return PretrainSizing(n, chinchilla, d, train_flops(n, d), rate, source, d / rate if rate > 0 else None)


def size_pretraining(
    spec: str,
    *,
    tokens: int | None = None,
    device_tflops: float | None = None,
    mfu: float = DEFAULT_MFU,
    steps: int = 3,
) -> PretrainSizing:
    """`lmf estimate --pretrain SPEC`: SPEC is a pretrain config file or a parameter count."""
    path = Path(spec).expanduser()
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise InvalidInputError(f"config file not found: {path}")
        return size_config(path, tokens, device_tflops, mfu, steps)
    return size_count(parse_param_count(spec), tokens, device_tflops, mfu)
