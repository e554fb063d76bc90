"""The fine-tuning config: one YAML format for every method, typed as dataclasses.

`lmf finetune CONFIG.yaml key=value ...` reads the YAML, applies the overrides and builds a
`FinetuneConfig`; unknown keys are errors so a typo is caught before a long run starts. Method
options are handed to the peft config class of the method (see `methods.py`), which rejects
unknown ones by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.config import apply_overrides, build, load_yaml
from lmfoundry.errors import InvalidInputError

METHODS = (
    "full",
    "lora",
    "qlora",
    "adalora",
    "ia3",
    "prefix",
    "ptuning_v2",
    "prompt",
    "ptuning",
    "adaption_prompt",
)
PROMPT_METHODS = ("prefix", "ptuning_v2", "prompt", "ptuning")
"""Methods that add virtual tokens (peft "prompt learning"): no merge into the base weights."""
MERGEABLE = ("lora", "qlora", "adalora", "ia3")

ACCELERATE_MODES = ("auto", "on", "off")
"""`training.accelerate`: auto (use accelerate when a launcher started the run), on, off."""
SCHEDULERS = ("linear", "cosine", "constant")
STAGES = ("sft", "reward", "dpo", "ppo", "pretrain", "continued-pretraining")
PRETRAIN_STAGES = ("pretrain", "continued-pretraining")
"""Stages that train on raw text (`pretrain:` section), next-token loss on every token."""
ALIGN_METHODS = ("full", "lora")
PRECISIONS = ("fp32", "bf16")


def check_method(name: str) -> str:
    if name not in METHODS:
        raise InvalidInputError(f"unknown fine-tuning method {name!r} (choose from {', '.join(METHODS)})")
    return name


@dataclass
class ModelConfig:
    name: str = "smollm2-135m-instruct"
    """Store name, packaged name, transformers directory or .gguf file of the base model."""


@dataclass
class DataConfig:
    path: str = "dialogsum-synthetic"
    """A data file, a directory with train/validation split files, or a bundled set name."""
    template: str = "auto"
    """Prompt template: summarize | alpaca | plain | chat | auto (by record format)."""
    max_length: int = 512
    """Tokens per training sequence; longer examples are cut (and counted)."""
    packing: bool = False
    """Join examples into max_length blocks instead of padding."""
    split_seed: int = 0
    """Seed for the train/validation split when the data has no validation file."""
    validation_fraction: float = 0.1
    """Share held out for evaluation when the data has no validation file."""
    limit: int | None = None
    """Use only the first N training records (quick experiments)."""
    eval_limit: int | None = 64
    """Evaluate the loss on at most N validation records."""


@dataclass
class QuantConfig:
    method: str = "nf4"
    """4-bit format of the frozen base (QLoRA): nf4 or fp4."""
    double_quant: bool = True
    """Quantize the per-block scales too (saves ~0.4 bits/parameter)."""
    block_size: int = 64


@dataclass
class MethodConfig:
    name: str = "lora"
    """full | lora | qlora | adalora | ia3 | prefix | ptuning_v2 | prompt | ptuning | adaption_prompt"""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the method's peft config (override the defaults in methods.py)."""
    quant: QuantConfig = field(default_factory=QuantConfig)
    """Base-model quantization, used by qlora only."""


@dataclass
class TrainingConfig:
    lr: float = 2e-4
    epochs: int = 1
    max_steps: int | None = None
    """Optimizer steps to run; overrides epochs when set."""
    batch_size: int = 4
    grad_accumulation: int = 1
    """Micro-batches per optimizer step."""
    eval_every: int = 50
    """Optimizer steps between evaluation-loss measurements (0 = only at the end)."""
    save_every: int = 100
    """Optimizer steps between resumable checkpoints (0 = only at the end)."""
    seed: int = 0
    """Seeds data order, dropout and adapter initialisation."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without a lower eval loss (None = never)."""
    activation_checkpointing: bool = False
    """Recompute activations in backward: less memory, ~30% more compute."""
    warmup_steps: int = 0
    scheduler: str = "linear"
    """linear | cosine | constant (after warmup)."""
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    loss_chunk: int = 256
    """Completion tokens per cross-entropy chunk; full-vocabulary logits never exist at once."""
    precision: str = "fp32"
    """fp32, or bf16 (autocast: bf16 matmuls, fp32 master weights; fast on CPUs with AMX/AVX512-BF16)."""
    threads: int | None = None
    """torch CPU threads (None = torch's default)."""
    accelerate: str = "auto"
    """auto: data-parallel through accelerate when `accelerate launch`/torchrun started > 1 process;
    on: always through accelerate; off: never (see docs/scaling.md)."""
    lean_allocator: bool = False
    """Return freed buffers to the OS (glibc mmap threshold 1 MB): ~0.6x peak RSS, ~0.6x tokens/s."""


@dataclass
class AlignConfig:
    """Options of the alignment stages (`stage: reward | dpo | ppo`); ignored by `stage: sft`."""

    beta: float = 0.1
    """DPO: strength of the implicit KL penalty (higher = stay closer to the reference)."""
    loss_type: str = "sigmoid"
    """DPO loss (trl `loss_type`): sigmoid (the DPO paper), ipo, hinge, robust, ..."""
    reward_model: str | None = None
    """PPO: a `stage: reward` run folder whose model scores the policy's responses."""
    kl_coef: float = 0.05
    """PPO: per-token penalty on log pi(y|x) - log pi_ref(y|x), the KL to the reference model."""
    gamma: float = 1.0
    """PPO: discount of GAE."""
    lam: float = 0.95
    """PPO: lambda of GAE (bias/variance of the advantage estimate)."""
    cliprange: float = 0.2
    """PPO: clip range of the policy probability ratio."""
    cliprange_value: float = 0.2
    """PPO: clip range of the value prediction around its rollout value."""
    vf_coef: float = 0.1
    """PPO: weight of the value loss."""
    ppo_epochs: int = 2
    """PPO: optimisation passes over each rollout batch."""
    rollout_batch: int = 8
    """PPO: prompts per rollout (one PPO step); minibatches of training.batch_size."""
    max_new_tokens: int = 32
    """PPO: response length limit while sampling rollouts."""
    temperature: float = 1.0
    """PPO: sampling temperature of rollouts."""
    eval_pairs: int = 64
    """reward / dpo: held-out preference pairs scored before and after training."""


@dataclass
class PretrainConfig:
    """Options of `stage: pretrain` (a new model) and `stage: continued-pretraining`; the context
    length is `data.max_length`, the held-out share `data.validation_fraction` (whole documents)."""

    sources: list[dict[str, Any]] = field(default_factory=list)
    """Raw-text sources, each `{path, weight, text_field, split, data_files}`: a text file or folder
    of them, a .jsonl/.parquet file, `builtin:python-reference`, or `hf:NAME` (`datasets`, streamed).
    weight 0 = evaluated only (e.g. a general corpus to measure forgetting). Empty: `data.path`."""
    tokenizer: str | None = None
    """pretrain: a model whose tokenizer to use; None = train a byte-level BPE on the train split."""
    vocab_size: int = 8192
    """pretrain: vocabulary of the trained tokenizer (and so of the model)."""
    layers: int = 4
    hidden_size: int = 256
    intermediate_size: int = 688
    heads: int = 4
    kv_heads: int = 2
    tie_embeddings: bool = True
    shard_tokens: int = 1_000_000
    """Tokens per memory-mapped shard file (a shard holds whole documents)."""
    token_cache: str | None = None
    """Where tokenized shards live (None = $LMF_HOME/cache/tokens); reused while the sources and
    the tokenizer are unchanged, resumed after an interrupted tokenization."""


@dataclass
class FinetuneConfig:
    stage: str = "sft"
    """sft (supervised) | reward (scalar-head reward model) | dpo | ppo | pretrain | continued-pretraining."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    output_dir: str = "runs/finetune"
    """The run folder: config, metrics, plot, checkpoints, adapter and summary go here."""


def validate(config: FinetuneConfig) -> FinetuneConfig:
    """Range checks that the type coercion in `lmfoundry.config.build` cannot express."""

    check_method(config.method.name)
    t, d = config.training, config.data
    positive = {
        "training.batch_size": t.batch_size,
        "training.grad_accumulation": t.grad_accumulation,
        "training.epochs": t.epochs,
        "training.loss_chunk": t.loss_chunk,
        "data.max_length": d.max_length,
    }
    for key, value in positive.items():
        if value < 1:
            raise InvalidInputError(f"{key} must be >= 1, got {value}")
    if t.max_steps is not None and t.max_steps < 1:
        raise InvalidInputError(f"training.max_steps must be >= 1, got {t.max_steps}")
    if t.lr <= 0:
        raise InvalidInputError(f"training.lr must be > 0, got {t.lr}")
    if t.eval_every < 0 or t.save_every < 0 or t.warmup_steps < 0:
        raise InvalidInputError("training.eval_every, save_every and warmup_steps must be >= 0")
    if t.scheduler not in SCHEDULERS:
        raise InvalidInputError(
            f"training.scheduler must be one of {', '.join(SCHEDULERS)}, got {t.scheduler!r}"
        )
    if t.precision not in PRECISIONS:
        raise InvalidInputError(
            f"training.precision must be one of {', '.join(PRECISIONS)}, got {t.precision!r}"
        )
    if t.accelerate not in ACCELERATE_MODES:
        raise InvalidInputError(
            f"training.accelerate must be one of {', '.join(ACCELERATE_MODES)}, got {t.accelerate!r}"
        )
    if not 0 < d.validation_fraction < 1:
        raise InvalidInputError(f"data.validation_fraction must be in (0, 1), got {d.validation_fraction}")
    if t.early_stopping_patience is not None and t.early_stopping_patience < 1:
        raise InvalidInputError("training.early_stopping_patience must be >= 1 (or null to disable)")
    if not isinstance(config.method.options, dict):
        raise InvalidInputError("method.options must be a mapping of peft config options")
    if config.stage not in STAGES:
        raise InvalidInputError(f"stage must be one of {', '.join(STAGES)}, got {config.stage!r}")
    if config.stage in PRETRAIN_STAGES:
        _validate_pretrain(config)
    elif config.stage != "sft":
        _validate_align(config)
    return config


def _validate_pretrain(config: FinetuneConfig) -> None:
    p = config.pretrain
    if config.stage == "pretrain" and config.method.name != "full":
        raise InvalidInputError(
            f"stage pretrain trains every weight: method.name must be full, got {config.method.name!r}"
        )
    if config.stage == "continued-pretraining" and p.tokenizer:
        raise InvalidInputError(
            "stage continued-pretraining uses the model's own tokenizer; drop pretrain.tokenizer"
        )
    sizes = {
        "pretrain.layers": p.layers,
        "pretrain.hidden_size": p.hidden_size,
        "pretrain.intermediate_size": p.intermediate_size,
        "pretrain.heads": p.heads,
        "pretrain.kv_heads": p.kv_heads,
        "pretrain.shard_tokens": p.shard_tokens,
    }
    for key, value in sizes.items():
        if value < 1:
            raise InvalidInputError(f"{key} must be >= 1, got {value}")
    if p.hidden_size % p.heads or p.heads % p.kv_heads:
        raise InvalidInputError(
            f"pretrain.hidden_size ({p.hidden_size}) must divide by heads ({p.heads}), "
            f"and heads by kv_heads ({p.kv_heads})"
        )
    if p.vocab_size < 260:
        raise InvalidInputError(
            f"pretrain.vocab_size must be >= 260 (256 bytes + specials), got {p.vocab_size}"
        )
    if not isinstance(p.sources, list) or not all(isinstance(s, dict) for s in p.sources):
        raise InvalidInputError("pretrain.sources must be a list of mappings like {path: FILE, weight: 1.0}")


def _validate_align(config: FinetuneConfig) -> None:
    a = config.align
    if config.method.name not in ALIGN_METHODS:
        raise InvalidInputError(
            f"stage {config.stage} supports method.name {' or '.join(ALIGN_METHODS)}, got {config.method.name!r}"
        )
    if config.training.precision != "fp32":
        raise InvalidInputError(f"stage {config.stage} trains in fp32 only (training.precision)")
    if a.beta <= 0 or a.kl_coef < 0:
        raise InvalidInputError("align.beta must be > 0 and align.kl_coef >= 0")
    if not (0 <= a.gamma <= 1 and 0 <= a.lam <= 1):
        raise InvalidInputError("align.gamma and align.lam must be in [0, 1]")
    if a.cliprange <= 0 or a.cliprange_value <= 0 or a.temperature <= 0:
        raise InvalidInputError("align.cliprange, align.cliprange_value and align.temperature must be > 0")
    for key in ("ppo_epochs", "rollout_batch", "max_new_tokens"):
        if getattr(a, key) < 1:
            raise InvalidInputError(f"align.{key} must be >= 1, got {getattr(a, key)}")
    if a.eval_pairs < 0:
        raise InvalidInputError(f"align.eval_pairs must be >= 0, got {a.eval_pairs}")
    if config.stage == "ppo" and not a.reward_model:
        raise InvalidInputError("stage ppo needs align.reward_model: the run folder of a `stage: reward` run")


def finetune_config_from_dict(data: dict[str, Any], overrides: list[str] | None = None) -> FinetuneConfig:
    """Build and validate a config from a mapping plus `a.b=value` overrides."""
    return validate(build(FinetuneConfig, apply_overrides(data, overrides or [])))


def load_finetune_config(path: str | Path, overrides: list[str] | None = None) -> FinetuneConfig:
    """Read a `configs/finetune/*.yaml` file (plus overrides) into a validated FinetuneConfig."""
    return finetune_config_from_dict(load_yaml(path), overrides)
