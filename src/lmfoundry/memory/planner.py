"""Memory planner: how much RAM a workload needs, component by component, and the measured peak.

The estimate is built from facts read without loading weights (config.json, the safetensors
header, the tokenizer file size) and one formula per component. Each formula is in
`Estimate.formulas` and in docs/memory.md, with the measurements that calibrated its constants.
The unit is the process's peak resident set size (RSS), because that is what runs out on a laptop
and what `--measure` can check.

Why not the rule of thumb (4 bytes/param to load fp32, ~24 bytes/param to train with Adam): for a
135M model the interpreter + torch + tokenizer runtime, the logits over a 49k vocabulary and the
saved activations each rival the weights, and LoRA trains ~2% of the parameters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError
from lmfoundry.models import store
from lmfoundry.models.load import resolve
from lmfoundry.quantize.blockwise import quant_overhead_bytes, weight_bytes

MODES = ("inference", "lora", "qlora", "full")
DTYPES = {"float32": 4, "bfloat16": 2, "float16": 2}
QUANTS = ("nf4", "fp4", "int8")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""What LoRA wraps by default: every linear layer of each block (lm_head excluded), like `lmf finetune`."""

MIB = 1024 * 1024

# Calibrated constants (docs/memory.md, "Calibration"): measured on this project's CPU stack
# (Python 3.11, torch 2.x CPU, transformers 5.x) with the tiny test model, whose weights are
# negligible, so what remains is the runtime itself.
RUNTIME_BYTES = {"inference": 405 * MIB, "train": 467 * MIB}
"""Interpreter + torch + transformers (+ peft for training) imported, modeling code loaded."""
TOKENIZER_RSS_PER_FILE_BYTE = 6
"""A fast tokenizer's resident size per byte of tokenizer.json (vocab + merges as Rust maps)."""
ALLOCATOR_SLACK = {"inference": 0.25, "train": 0.9}
"""Fraction of the transient working set that glibc malloc keeps resident after free."""
QUANT_BLOCK = 64


@dataclass(frozen=True)
class ModelFacts:
    """What the formulas need to know about a decoder-only transformer (Llama/Qwen2/Mistral-like)."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    n_params: int
    checkpoint_bytes: int = 0
    checkpoint_dtype_bytes: int = 4
    tokenizer_bytes: int = 0

    @property
    def block_linear_params(self) -> int:
        """Weights of the q/k/v/o and gate/up/down projections over all layers (what LoRA and quantization touch)."""
        h, i, q, kv = self.hidden_size, self.intermediate_size, self.q_dim, self.kv_dim
        return self.num_layers * (h * q + 2 * h * kv + q * h + 3 * h * i)

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim


def config_param_count(config: dict[str, Any]) -> int:
    """Parameters of a Llama/Qwen2-like model from its config (checked against `sum(p.numel())`)."""
    facts = facts_from_config(config, n_params=0)
    h, v, layers = facts.hidden_size, facts.vocab_size, facts.num_layers
    bias = (
        facts.q_dim + 2 * facts.kv_dim
        if config.get("attention_bias") or config.get("model_type") == "qwen2"
        else 0
    )
    per_layer_norms = 2 * h
    embeddings = v * h * (1 if facts.tie_word_embeddings else 2)
    return facts.block_linear_params + layers * (bias + per_layer_norms) + h + embeddings


def facts_from_config(
    config: dict[str, Any],
    *,
    n_params: int | None = None,
    checkpoint_bytes: int = 0,
    tokenizer_bytes: int = 0,
) -> ModelFacts:
    """Read the shape facts from a config.json dict (multimodal configs: their `text_config`)."""
    cfg = config.get("text_config") or config
    try:
        hidden = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        facts = ModelFacts(
            hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            num_layers=int(cfg["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            vocab_size=int(cfg["vocab_size"]),
            tie_word_embeddings=bool(
                config.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False))
            ),
            n_params=0,
            checkpoint_bytes=checkpoint_bytes,
            tokenizer_bytes=tokenizer_bytes,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LmfError(
            f"config.json lacks what the memory planner needs ({exc}); is it a decoder-only LM?"
        ) from exc
    count = n_params if n_params is not None else config_param_count(config)
    return ModelFacts(**{**asdict(facts), "n_params": count})


def model_facts(name: str) -> ModelFacts:
    """Facts for a model name (store entry, packaged model, directory...), without loading weights."""

    folder = Path(resolve(name).checkpoint())
    if not (folder / "config.json").is_file():
        raise LmfError(
            f"{folder} has no config.json: the memory planner needs a local transformers checkpoint"
        )
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    n_params, dtypes = (
        (None, set()) if not list(folder.glob("*.safetensors")) else store.safetensors_summary(folder)
    )
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    tokenizer = folder / "tokenizer.json"
    facts = facts_from_config(
        config,
        n_params=n_params,
        checkpoint_bytes=weights,
        tokenizer_bytes=tokenizer.stat().st_size if tokenizer.is_file() else 0,
    )
    dtype_bytes = 2 if dtypes and dtypes <= {"F16", "BF16"} else 4
    return ModelFacts(**{**asdict(facts), "checkpoint_dtype_bytes": dtype_bytes})


@dataclass(frozen=True)
class Workload:
    """What will run: the mode, precision and the shape of one batch."""

    mode: str = "inference"
    dtype: str = "float32"
    quant: str | None = None
    """Weight quantization of the block linears (qlora defaults to nf4)."""
    seq_len: int = 512
    batch: int = 1
    lora_rank: int = 8
    new_tokens: int = 4
    """Tokens decoded after the prefill (inference; they extend the KV cache)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidInputError(f"unknown mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.dtype not in DTYPES:
            raise InvalidInputError(f"unknown dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.quant is not None and self.quant not in QUANTS:
            raise InvalidInputError(f"unknown quantization {self.quant!r}: choose one of {', '.join(QUANTS)}")
        if self.mode in ("lora", "full") and self.quant is not None:
            raise InvalidInputError(f"--quant does not apply to mode {self.mode!r} (use --mode qlora)")
        for key in ("seq_len", "batch", "lora_rank"):
            if getattr(self, key) < 1:
                raise InvalidInputError(
                    f"{key.replace('_', '-')} must be a positive integer, got {getattr(self, key)}"
                )
        if self.new_tokens < 0:
            raise InvalidInputError(f"new-tokens must be >= 0, got {self.new_tokens}")

    @property
    def training(self) -> bool:
        return self.mode != "inference"

    @property
    def weight_quant(self) -> str | None:
        return self.quant or ("nf4" if self.mode == "qlora" else None)

    @property
    def tokens(self) -> int:
        return self.seq_len * self.batch


@dataclass
class Estimate:
    """Bytes per component, the formula behind each, and their sum (the predicted peak RSS)."""

    workload: Workload
    facts: ModelFacts
    components: dict[str, int]
    formulas: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(self.components.values())

    @property
    def rule_of_thumb_bytes(self) -> int:
        """What the folk rule predicts: 4 B/param to load in fp32, ~24 B/param to train with Adam."""
        per_param = 24 if self.workload.mode == "full" else DTYPES[self.workload.dtype]
        return self.facts.n_params * per_param

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": {**asdict(self.workload), "quant": self.workload.weight_quant},
            "parameters": self.facts.n_params,
            "trainable_parameters": trainable_params(self.facts, self.workload),
            "total_bytes": self.total_bytes,
            "components": dict(self.components),
            "formulas": dict(self.formulas),
            "rule_of_thumb_bytes": self.rule_of_thumb_bytes,
            "notes": list(self.notes),
        }


def lora_params(facts: ModelFacts, rank: int) -> int:
    """LoRA A (r x in) and B (out x r) for every targeted linear: r * (in + out) each."""
    h, i, q, kv = facts.hidden_size, facts.intermediate_size, facts.q_dim, facts.kv_dim
    per_layer = (h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h)
    return facts.num_layers * rank * per_layer


def trainable_params(facts: ModelFacts, workload: Workload) -> int:
    if workload.mode == "inference":
        return 0
    if workload.mode == "full":
        return facts.n_params
    return lora_params(facts, workload.lora_rank)


def quantized_weight_bytes(n_params: int, method: str) -> int:
    """Codes (4 or 8 bits) plus one fp32 absmax per block of 64, as `lmfoundry.quantize.modules` stores them."""

    return weight_bytes(n_params, method) + quant_overhead_bytes(n_params, QUANT_BLOCK)


def allocator_retention_fraction(training: bool, environ: dict[str, str] | None = None) -> float:
    """glibc malloc keeps freed heap memory resident; a fixed MALLOC_MMAP_THRESHOLD_ stops that."""
    env = os.environ if environ is None else environ
    if env.get("MALLOC_MMAP_THRESHOLD_"):
        return 0.0
    return ALLOCATOR_SLACK["train" if training else "inference"]


def saved_floats_per_token_layer(facts: ModelFacts, workload: Workload) -> int:
    """Values autograd keeps per token per decoder layer (counted with saved_tensors_hooks, docs/memory.md)."""
    h, i, q, kv = facts.hidden_size, facts.intermediate_size, facts.q_dim, facts.kv_dim
    norms = 6 * h if workload.mode == "full" else 4 * h
    lora = len(LORA_TARGETS) * workload.lora_rank if workload.mode in ("lora", "qlora") else 0
    return norms + 4 * i + 2 * q + 2 * kv + facts.num_heads + 2 + lora


def estimate(facts: ModelFacts, workload: Workload, environ: dict[str, str] | None = None) -> Estimate:
    """Predict the peak RSS of `workload` on the model described by `facts`, component by component.

    Symbols in the formulas: P params, L layers, H hidden, I intermediate, V vocab, n_h/n_kv heads,
    d head_dim, B batch, S seq_len, T = B*S tokens, b dtype bytes, r LoRA rank.
    """
    w, f = workload, facts
    comp: dict[str, int] = {}
    form: dict[str, str] = {}
    phase = "train" if w.training else "inference"
    comp["runtime"] = RUNTIME_BYTES[phase]
    form["runtime"] = f"calibrated ({phase}): Python + torch + transformers{' + peft' if w.training else ''}"
    comp["tokenizer"] = TOKENIZER_RSS_PER_FILE_BYTE * f.tokenizer_bytes
    form["tokenizer"] = f"{TOKENIZER_RSS_PER_FILE_BYTE} x tokenizer.json bytes"
    _weight_components(f, w, comp, form)
    if w.training:
        _training_components(f, w, comp, form)
    else:
        _inference_components(f, w, comp, form)
    slack = allocator_retention_fraction(w.training, environ)
    working = ("activations", "logits") if w.training else ("kv_cache", "activations")
    comp["allocator_retention"] = int(slack * sum(comp[k] for k in working))
    form["allocator_retention"] = f"{slack:g} x ({' + '.join(working)}); 0 with MALLOC_MMAP_THRESHOLD_ set"
    return Estimate(w, f, comp, form, notes=_notes(f, w))


def _weight_components(f: ModelFacts, w: Workload, comp: dict[str, int], form: dict[str, str]) -> None:
    b = DTYPES[w.dtype]
    quant = w.weight_quant
    if quant is None:
        comp["weights"] = f.n_params * b
        form["weights"] = "P*b"
    else:
        lin = f.block_linear_params
        comp["weights"] = (f.n_params - lin) * b + quantized_weight_bytes(lin, quant)
        bits = 8 if quant == "int8" else 4
        form["weights"] = f"(P - P_lin)*b + P_lin*{bits}/8 + 4*P_lin/{QUANT_BLOCK}  (P_lin = block linears)"
    converts = quant is not None or b != f.checkpoint_dtype_bytes
    comp["load_transient"] = f.checkpoint_bytes if converts else 0
    form["load_transient"] = "checkpoint bytes if converted/quantized on load, else 0 (mmapped as is)"


def _inference_components(f: ModelFacts, w: Workload, comp: dict[str, int], form: dict[str, str]) -> None:
    b = DTYPES[w.dtype]
    comp["kv_cache"] = 2 * f.num_layers * f.kv_dim * (w.seq_len + w.new_tokens) * w.batch * b
    form["kv_cache"] = "2*L*n_kv*d*(S + new_tokens)*B*b"
    comp["activations"] = w.tokens * (3 * f.intermediate_size + 4 * f.hidden_size + 2 * f.q_dim) * b
    form["activations"] = "T*(3*I + 4*H + 2*n_h*d)*b  (one layer's prefill transients)"
    comp["logits"] = w.batch * f.vocab_size * 4
    form["logits"] = "B*V*4  (prefill keeps the last position's logits only)"


def _training_components(f: ModelFacts, w: Workload, comp: dict[str, int], form: dict[str, str]) -> None:
    b = DTYPES[w.dtype]
    trainable = trainable_params(f, w)
    if w.mode != "full":
        comp["adapter_weights"] = trainable * b
        form["adapter_weights"] = "P_lora*b, P_lora = L*r*sum(in + out) over q,k,v,o,gate,up,down"
    comp["gradients"] = trainable * b
    form["gradients"] = "P_train*b"
    comp["optimizer"] = 2 * trainable * b
    form["optimizer"] = "2*P_train*b  (AdamW exp_avg + exp_avg_sq)"
    per = saved_floats_per_token_layer(f, w)
    final_norm = 3 * f.hidden_size if w.mode == "full" else 0
    comp["activations"] = w.tokens * (f.num_layers * per + final_norm) * b
    if w.mode == "full":
        form["activations"] = f"T*(L*(6*H + 4*I + 2*n_h*d + 2*n_kv*d + n_h + 2) + 3*H)*b  [{per}/token/layer]"
    else:
        form["activations"] = f"T*L*(4*H + 4*I + 2*n_h*d + 2*n_kv*d + n_h + 2 + 7*r)*b  [{per}/token/layer]"
    half = b if b != 4 else 0
    comp["logits"] = w.tokens * f.vocab_size * (4 * 3 + half)
    form["logits"] = "T*V*4*3  (fp32 log-softmax saved, its grad, the logits' grad)" + (
        " + T*V*b (half logits)" if half else ""
    )


def _notes(f: ModelFacts, w: Workload) -> list[str]:
    notes = []
    if (
        w.training
        and f.vocab_size * 4 * 3 > f.num_layers * saved_floats_per_token_layer(f, w) * DTYPES[w.dtype]
    ):
        notes.append("the loss over the vocabulary costs more per token than all layers' activations")
    if w.mode == "qlora":
        notes.append("on CPU, 4-bit weights save memory but not time (matmuls dequantize per band)")
    return notes


def measure(name: str, workload: Workload, *, timeout: float = 1800, steps: int = 2) -> dict[str, Any]:
    """Run the workload in a fresh interpreter (`memory_measure`) and return its report (peak_rss_bytes...)."""
    if workload.dtype != "float32":
        raise InvalidInputError("--measure runs the fp32 CPU path only: drop --dtype or use float32")
    if workload.mode != "qlora" and workload.quant is not None:
        raise InvalidInputError("--measure with --quant is supported for --mode qlora only")
    spec = {
        "model": name,
        "mode": workload.mode,
        "seq_len": workload.seq_len,
        "batch": workload.batch,
        "lora_rank": workload.lora_rank,
        "new_tokens": workload.new_tokens,
        "steps": steps,
        "quant": workload.weight_quant or "nf4",
    }
    cmd = [sys.executable, "-m", "lmfoundry.memory.measure", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LmfError(
            f"the measured workload ran past {timeout:.0f} s; try a smaller --seq-len/--batch"
        ) from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise LmfError(f"the measured workload failed (exit {proc.returncode}): {tail}")
    report: dict[str, Any] = json.loads(lines[-1])
    report["command"] = f"python -m lmfoundry.memory.measure '{cmd[-1]}'"
    return report


def plan(name: str, workload: Workload, *, measure_peak: bool = False) -> dict[str, Any]:
    """The estimate as a dict, with the measured peak and estimate/measured ratio when asked."""
    result = estimate(model_facts(name), workload).to_dict()
    result["model"] = name
    if measure_peak:
        report = measure(name, workload)
        result["measured_peak_bytes"] = report["peak_rss_bytes"]
        result["ratio"] = round(result["total_bytes"] / report["peak_rss_bytes"], 4)
        result["measure"] = {k: report[k] for k in ("phases", "seconds", "threads", "command")}
    return result
