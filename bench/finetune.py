"""Fine-tuning throughput and peak memory: `lmf finetune` vs a plain HF Trainer + peft baseline.

Same model (the packaged SmolLM2-135M-Instruct), same data (dialogsum-synthetic, summarize
template, prompt tokens masked), same LoRA settings (r 8, all linear layers), sequence length 256,
batch 4, AdamW, the same number of steps. Each configuration runs in its own subprocess so its
peak RSS (VmHWM) is its own. Throughput counts non-padding input tokens over the timed steps
(the first step is a warm-up and not timed).

    .venv/bin/python bench/finetune.py --steps 6 --out docs/benchmarks-finetune.json

Configurations: `baseline` (HF Trainer + peft LoRA, fp32), `ours` (lmf finetune LoRA, fp32:
chunked completion-only loss), `ours_ac` (+ activation checkpointing), `ours_bf16_ac` (+ bf16
autocast), `ours_qlora_ac` (4-bit NF4 base + activation checkpointing), `ours_qlora_ac_stored`
(QLoRA on an NF4+double-quant store entry made beforehand, so the fp32 weights are never loaded:
`lmf quantize MODEL --method nf4 --double-quant`); also `ours_bf16`, `ours_qlora` (no
checkpointing) and `ours_qlora_ac_stored_emb` (the stored base also has int8 embeddings).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "smollm2-135m-instruct"
SEQ_LEN, BATCH, RANK, LR = 256, 4, 8, 2e-4
CONFIGS = ("baseline", "ours", "ours_ac", "ours_bf16_ac", "ours_qlora_ac", "ours_qlora_ac_stored")
STORED = {"ours_qlora_ac_stored": None, "ours_qlora_ac_stored_emb": "int8"}
"""Configs that train on a quantized store entry -> the embedding method of that entry."""
LEAN = "_lean"
"""Suffix for any config: the same run with `training.lean_allocator` (glibc returns freed memory)."""


def stored_entry(model_name: str, embeddings: str | None) -> str:
    """Name of the NF4+double-quant store entry of `model_name` (created once, in the parent)."""
    from lmfoundry.models import store
    from lmfoundry.quantize.store_entry import create_quantized

    name = f"{model_name}-nf4-dq" + (f"-emb-{embeddings}" if embeddings else "")
    if not store.is_pulled(name):
        create_quantized(model_name, "nf4", double_quant=True, name=name, embeddings=embeddings)
    return name


def _peak_rss() -> int:
    from lmfoundry.rss import peak_rss_bytes

    return peak_rss_bytes()


def _examples(tokenizer: Any, n: int) -> list[dict[str, list[int]]]:
    from lmfoundry.finetune.data.records import load_records
    from lmfoundry.finetune.data.tokenize import build_dataset

    records = load_records("dialogsum-synthetic", "train")[:n]
    examples, _ = build_dataset(records, tokenizer, "summarize", SEQ_LEN, warn=False)
    return examples


def run_baseline(steps: int, model_name: str) -> dict[str, Any]:
    """HF Trainer + peft, the way a tutorial does it: model(labels=...) computes full logits."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from lmfoundry.finetune.data.tokenize import collate
    from lmfoundry.models.load import load_hf_model

    model, tokenizer = load_hf_model(model_name)
    model = get_peft_model(
        model,
        LoraConfig(
            task_type="CAUSAL_LM", r=RANK, lora_alpha=2 * RANK, lora_dropout=0.0, target_modules="all-linear"
        ),
    )
    examples = _examples(tokenizer, BATCH * (steps + 1))
    marks: list[float] = []

    class Timer(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=BATCH,
            max_steps=steps + 1,
            learning_rate=LR,
            lr_scheduler_type="constant",
            logging_steps=1000,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            seed=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=examples,
            data_collator=lambda batch: collate(batch, tokenizer.pad_token_id),
            callbacks=[Timer()],
        )
        trainer.train()
    # The default sampler shuffles; count the tokens the timed steps saw from the same batches.
    tokens = _timed_tokens(examples, steps)
    return {"seconds": marks[-1] - marks[0], "tokens": tokens, "threads": torch.get_num_threads()}


def _timed_tokens(examples: list[dict[str, list[int]]], steps: int) -> int:
    """Tokens in all but one batch: every batch has BATCH examples of similar length."""
    total = sum(len(e["input_ids"]) for e in examples)
    return round(total * steps / (steps + 1))


def run_ours(
    steps: int, model_name: str, method: str, precision: str, checkpointing: bool = False
) -> dict[str, Any]:
    """The `lmf finetune` loop on the same examples (eval and checkpoints off)."""
    import torch

    from lmfoundry.finetune.config import MethodConfig, TrainingConfig
    from lmfoundry.finetune.train import loop as train_loop
    from lmfoundry.finetune.train.methods import prepare_model
    from lmfoundry.models.load import load_hf_model

    model, tokenizer = load_hf_model(model_name)
    examples = _examples(tokenizer, BATCH * (steps + 1))
    options = {"r": RANK, "lora_alpha": 2 * RANK, "lora_dropout": 0.0}
    model = prepare_model(model, MethodConfig(name=method, options=options), steps + 1, seed=0)
    config = TrainingConfig(
        lr=LR,
        max_steps=steps + 1,
        batch_size=BATCH,
        eval_every=0,
        save_every=0,
        scheduler="constant",
        max_grad_norm=None,
        precision=precision,
    )
    if checkpointing:
        from lmfoundry.finetune.train.sft import enable_activation_checkpointing

        enable_activation_checkpointing(model)
    loop = train_loop.make_loop(model, examples, [], config, tokenizer.pad_token_id)
    train_loop.train_step(loop)  # warm-up
    tokens_before, start = loop.state.tokens, time.perf_counter()
    for _ in range(steps):
        train_loop.train_step(loop)
    return {
        "seconds": time.perf_counter() - start,
        "tokens": loop.state.tokens - tokens_before,
        "threads": torch.get_num_threads(),
    }


def child(name: str, steps: int, model_name: str) -> dict[str, Any]:
    config_name = name
    if name.endswith(LEAN):
        from lmfoundry.memory.allocator import use_lean_allocator

        use_lean_allocator()
        name = name.removesuffix(LEAN)
    if name == "baseline":
        result = run_baseline(steps, model_name)
    elif name == "ours":
        result = run_ours(steps, model_name, "lora", "fp32")
    elif name == "ours_bf16":
        result = run_ours(steps, model_name, "lora", "bf16")
    elif name == "ours_qlora":
        result = run_ours(steps, model_name, "qlora", "fp32")
    elif name == "ours_ac":
        result = run_ours(steps, model_name, "lora", "fp32", checkpointing=True)
    elif name == "ours_bf16_ac":
        result = run_ours(steps, model_name, "lora", "bf16", checkpointing=True)
    elif name == "ours_qlora_ac":
        result = run_ours(steps, model_name, "qlora", "fp32", checkpointing=True)
    elif name in STORED:
        result = run_ours(steps, stored_entry(model_name, STORED[name]), "qlora", "fp32", checkpointing=True)
    else:
        raise SystemExit(f"unknown config {name}")
    result.update(
        config=config_name,
        steps=steps,
        peak_rss_bytes=_peak_rss(),
        tokens_per_s=result["tokens"] / result["seconds"],
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=6, help="timed optimizer steps per config (plus one warm-up)"
    )
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated subset of {','.join(CONFIGS)}; any name + {LEAN}: lean allocator",
    )
    parser.add_argument("--out", type=Path, help="write the JSON results here too")
    parser.add_argument("--model", default=MODEL, help=f"model to train (default {MODEL})")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.stdout.write(json.dumps(child(args.child, args.steps, args.model)) + "\n")
        return 0
    from lmfoundry.finetune.data.synthetic_dialogsum import make_dialogsum_synthetic
    from lmfoundry.paths import lmf_home

    if not (lmf_home() / "data" / "dialogsum-synthetic").is_dir():
        make_dialogsum_synthetic()  # the bundled set, made on first use like `lmf finetune` does
    results = {}
    for name in args.configs.split(","):
        if name.removesuffix(LEAN) in STORED:
            stored_entry(args.model, STORED[name.removesuffix(LEAN)])  # outside the measured child process
        proc = subprocess.run(
            [sys.executable, __file__, "--child", name, "--steps", str(args.steps), "--model", args.model],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(results[name]), flush=True)
    base = results.get("baseline")
    if base:
        for r in results.values():
            r["speedup_vs_baseline"] = r["tokens_per_s"] / base["tokens_per_s"]
            r["rss_vs_baseline"] = r["peak_rss_bytes"] / base["peak_rss_bytes"]
    pairs = [("ours_qlora", "ours"), ("ours_qlora_ac", "ours_ac")]
    pairs += [(name, "ours_ac") for name in STORED] + [(name, "ours") for name in STORED]
    pairs += [(q + LEAN, lora + LEAN) for q, lora in pairs]
    for qlora, lora in pairs:
        if qlora in results and lora in results:
            results[qlora][f"rss_vs_{lora}"] = (
                results[qlora]["peak_rss_bytes"] / results[lora]["peak_rss_bytes"]
            )
    summary = {
        "model": args.model,
        "seq_len": SEQ_LEN,
        "batch": BATCH,
        "lora_rank": RANK,
        "steps": args.steps,
        "results": results,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
