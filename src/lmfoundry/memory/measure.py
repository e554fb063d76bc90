"""Run one memory-planner workload briefly and report its own peak RSS as one JSON line.

`lmf estimate --measure` starts this module in a fresh interpreter
(`python -m lmfoundry.memory.measure '{"model": ..., "mode": ...}'`) so the number is the workload's
peak and nothing else: no pytest, no earlier workload, no parent process.

The numbers are VmHWM / VmRSS of the fresh process (`lmfoundry.rss` says why not `ru_maxrss`).

The workloads mirror what the project does with a model:
- inference: prefill `seq_len` tokens at batch B asking only for the last position's logits
  (`logits_to_keep=1`, as the transformers backend does), then greedy-decode a few tokens.
- lora: peft LoRA (rank r, all linear layers except lm_head), AdamW, a few full steps with labels.
- qlora: the same on a model quantized in memory with `lmfoundry.quantize.modules`.
- full: every parameter trainable, AdamW, a few steps.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from lmfoundry.models.load import load_hf_model, resolve
from lmfoundry.quantize.modules import quantize_model, register_lora_layers
from lmfoundry.rss import current_rss_bytes, peak_rss_bytes

MODES = ("inference", "lora", "qlora", "full")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""All linear layers of a Llama/Qwen2 block: what `lmf finetune` targets by default (lm_head excluded)."""


def _phase(phases: dict[str, dict[str, int]], name: str) -> None:
    phases[name] = {"rss": current_rss_bytes(), "peak": peak_rss_bytes()}


def _inputs(vocab_size: int, batch: int, seq_len: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(0)
    return torch.randint(10, vocab_size, (batch, seq_len), generator=generator)


def run_inference(model: Any, batch: int, seq_len: int, new_tokens: int) -> None:
    import torch

    ids = _inputs(model.config.vocab_size, batch, seq_len)
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        for _ in range(new_tokens):
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            out = model(input_ids=token, cache=out.cache, use_cache=True)


def wrap_lora(model: Any, rank: int) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(LORA_TARGETS))
    if any(type(m).__name__ == "QuantLinear" for m in model.modules()):
        register_lora_layers(config)
    return get_peft_model(model, config)


def run_training(model: Any, batch: int, seq_len: int, steps: int) -> None:
    import torch

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    ids = _inputs(model.config.vocab_size, batch, seq_len)
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def measure(
    model_name: str,
    mode: str,
    *,
    seq_len: int,
    batch: int,
    lora_rank: int = 8,
    new_tokens: int = 4,
    steps: int = 2,
    quant: str = "nf4",
) -> dict[str, Any]:
    """Run the workload in *this* process and return its peak RSS with per-phase readings."""
    phases: dict[str, dict[str, int]] = {}
    start = time.perf_counter()

    resolve(model_name).checkpoint()  # fail fast on a bad name; pull once, outside the measured load
    import torch

    _phase(phases, "imports")
    model, _tokenizer = load_hf_model(model_name)
    _phase(phases, "load")
    if mode == "inference":
        run_inference(model, batch, seq_len, new_tokens)
    else:
        if mode == "qlora":
            quantize_model(model, method=quant)
            _phase(phases, "quantize")
        if mode == "full":
            for p in model.parameters():
                p.requires_grad_(True)
        else:
            model = wrap_lora(model, lora_rank)
        run_training(model, batch, seq_len, steps)
    _phase(phases, "workload")
    return {
        "model": model_name,
        "mode": mode,
        "seq_len": seq_len,
        "batch": batch,
        "lora_rank": lora_rank,
        "peak_rss_bytes": peak_rss_bytes(),
        "phases": phases,
        "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - start, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m lmfoundry.memory.measure '{"model": ..., "mode": ..., ...}'`: one JSON line out.

    The workload comes as one JSON object with `measure`'s parameters (what `lmf estimate
    --measure` passes); the command line itself is `lmf estimate`.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write(
            f'usage: python -m lmfoundry.memory.measure \'{{"model": ..., "mode": ...}}\' (modes: {", ".join(MODES)})\n'
        )
        return 2
    spec = json.loads(args[0])
    result = measure(spec.pop("model"), spec.pop("mode", "inference"), **spec)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
