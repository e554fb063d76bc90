"""The raw-text stages: `pretrain` (a new Llama-style model) and `continued-pretraining` (a model
from the store trained further on domain text). Both run the fine-tuning loop (`loop.py`), so
cosine warmup, gradient accumulation, clipping, periodic evaluation, checkpoints and exact resume
behave as in `sft`; only the data (packed token blocks of every position) and the model differ.

The run folder gets `tokenizer/` (pretrain with a trained tokenizer), `model/` (safetensors +
tokenizer: an ordinary transformers folder every lmf command loads) or `adapter/` (continued
pretraining with LoRA), and the summary adds perplexities, tokens/s and MFU (6·N·D against the
machine's measured peak, `flops.py`), and the held-out loss of every source before and after
training (`source_eval`): with a general corpus as a source (weight 0 = evaluated only, > 0 =
replayed) forgetting is measured, not guessed.
"""

from __future__ import annotations

import json
import math
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.config import FinetuneConfig
from lmfoundry.finetune.data.corpus import Corpus, SplitPlan, cache_root, load_corpus
from lmfoundry.finetune.data.text_sources import TextSource, parse_sources, split_documents
from lmfoundry.finetune.data.tokenizer_train import train_bpe
from lmfoundry.finetune.train import loop as train_loop
from lmfoundry.finetune.train.artifacts import ArtifactInfo, save_artifact
from lmfoundry.finetune.train.callbacks import (
    CHECKPOINT_DIR,
    METRICS_FILE,
    MetricsFile,
    ProgressBar,
    plot_loss_curve,
    read_metrics,
    truncate_metrics,
)
from lmfoundry.finetune.train.distributed import Ranks, make_ranks
from lmfoundry.finetune.train.flops import mfu, peak_flops, train_flops
from lmfoundry.finetune.train.loss import hf_model
from lmfoundry.finetune.train.methods import prepare_model, trainable_parameters
from lmfoundry.finetune.train.stage import StageJob
from lmfoundry.fsutil import atomic_dir, atomic_write_text
from lmfoundry.models.load import load_hf_model, resolve

TOKENIZER_DIR = "tokenizer"
SOURCE_EVAL_FILE = "source_eval_initial.json"
SCRATCH = "scratch"
"""`base_model` of a from-scratch model's lmf_adapter.json: there is no base."""


def pretrain_tokenizer(config: FinetuneConfig, sources: list[TextSource], ranks: Ranks, run_dir: Any) -> Any:
    """The tokenizer of `stage: pretrain`: a named model's, or BPE trained once into the run folder."""
    from transformers import AutoTokenizer

    p = config.pretrain
    if p.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(resolve(p.tokenizer).checkpoint())
    else:
        folder = run_dir / TOKENIZER_DIR
        if ranks.is_main and not folder.is_dir():
            plan = split_plan(config)
            texts = (
                text
                for source in sources
                if source.weight > 0
                for text in split_documents(source, "train", plan.fraction, plan.seed)
            )
            with atomic_dir(folder) as tmp:
                train_bpe(texts, p.vocab_size).save_pretrained(tmp)
        ranks.wait()
        tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def llama_shape(
    config: FinetuneConfig, vocab_size: int, special: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The config.json of the `pretrain:` model (a Llama), for a vocabulary of `vocab_size`."""
    p = config.pretrain
    return {
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": p.hidden_size,
        "intermediate_size": p.intermediate_size,
        "num_hidden_layers": p.layers,
        "num_attention_heads": p.heads,
        "num_key_value_heads": p.kv_heads,
        "max_position_embeddings": config.data.max_length,
        "tie_word_embeddings": p.tie_embeddings,
        **(special or {}),
    }


def llama_from_shape(shape: dict[str, Any], seed: int) -> Any:
    """A randomly initialised (seeded) fp32 Llama of `shape` (see `llama_shape`)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    fields = {k: v for k, v in shape.items() if k != "model_type"}
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(LlamaConfig(**fields), dtype=torch.float32)


def build_llama(config: FinetuneConfig, tokenizer: Any) -> Any:
    """The model of `stage: pretrain`, sized to the tokenizer, with its special token ids."""
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return llama_from_shape(llama_shape(config, len(tokenizer), special), config.training.seed)


def split_plan(config: FinetuneConfig) -> SplitPlan:
    d = config.data
    return SplitPlan(d.validation_fraction, d.split_seed, config.pretrain.shard_tokens)


def compute_params(model: Any) -> int:
    """N of 6·N·D: unique parameters less the input embedding table when it is not tied to the
    output head (a lookup, not a matmul); a tied table is counted once, as the head's matmul."""
    base = hf_model(model)
    _, total = trainable_parameters(base)
    embeddings, head = base.get_input_embeddings(), base.get_output_embeddings()
    tied = head is not None and head.weight is embeddings.weight
    return total if tied else total - embeddings.weight.numel()


def source_losses(loop: train_loop.Loop, corpus: Corpus) -> dict[str, float | None]:
    """Held-out loss of every source (validation blocks, each process a share)."""
    return {
        source.name: train_loop.shared_eval_loss(loop, blocks)
        for source, blocks in zip(corpus.sources, corpus.validation, strict=True)
    }


def perplexity(loss: float | None) -> float | None:
    return math.exp(loss) if loss is not None and loss < 50 else None


def _initial_source_losses(job: StageJob, loop: train_loop.Loop, corpus: Corpus) -> dict[str, float | None]:
    """Before the first step (kept in the run folder, so a resumed run reports them too)."""
    path = job.run_dir / SOURCE_EVAL_FILE
    if job.resume and path.is_file():
        saved: dict[str, float | None] = json.loads(path.read_text(encoding="utf-8"))
        return saved
    losses = source_losses(loop, corpus)
    if loop.ranks.is_main:
        atomic_write_text(path, json.dumps(losses, indent=2))
    return losses


def _model_and_tokenizer(
    config: FinetuneConfig, sources: list[TextSource], ranks: Ranks, run_dir: Any
) -> tuple[Any, Any]:
    if config.stage == "pretrain":
        tokenizer = pretrain_tokenizer(config, sources, ranks, run_dir)
        return build_llama(config, tokenizer), tokenizer
    model, tokenizer = load_hf_model(config.model.name)
    if tokenizer.eos_token_id is None:
        raise LmfError(f"{config.model.name}'s tokenizer has no EOS token to separate documents")
    return model, tokenizer


def _corpus(
    config: FinetuneConfig, sources: list[TextSource], tokenizer: Any, ranks: Ranks, progress: bool
) -> Corpus:
    """Tokenized on the main process first (one writer per cache folder); the others reuse it."""
    args = (sources, tokenizer, cache_root(config.pretrain.token_cache), split_plan(config))
    rest = (config.data.max_length, config.data.eval_limit)
    corpus = load_corpus(*args, *rest, progress=progress) if ranks.is_main else None
    ranks.wait()
    return corpus or load_corpus(*args, *rest, progress=False)


def run_pretrain(job: StageJob) -> dict[str, Any]:
    """The runner of `stage: pretrain` and `stage: continued-pretraining` (see the module doc)."""
    import torch

    config, t, run_dir = job.config, job.config.training, job.run_dir
    ranks = make_ranks(t.accelerate)
    ranks.wait()
    sources = parse_sources(config.pretrain.sources, config.data.path)
    model, tokenizer = _model_and_tokenizer(config, sources, ranks, run_dir)
    corpus = _corpus(config, sources, tokenizer, ranks, job.progress)
    train_set = corpus.mixed_train(t.seed)
    model = prepare_model(model, config.method, train_loop.total_steps(len(train_set), t), t.seed)
    loop = train_loop.make_loop(
        model, train_set, corpus.validation[0], t, tokenizer.pad_token_id, ranks=ranks
    )
    initial = _initial_source_losses(job, loop, corpus)
    checkpoint = run_dir / CHECKPOINT_DIR
    if job.resume:
        train_loop.load_checkpoint(loop, checkpoint)
        if ranks.is_main:
            truncate_metrics(run_dir / METRICS_FILE, loop.state.step)
    else:
        torch.manual_seed(t.seed)
    n_compute = compute_params(model)
    peak = peak_flops(t.precision)
    bar = ProgressBar(
        loop.state.total_steps,
        loop.state.step,
        enabled=job.progress and ranks.is_main,
        label=config.stage,
        flops_per_token=train_flops(n_compute, 1),
        peak_flops=peak * ranks.world,
    )
    with bar:
        if ranks.is_main:
            loop.callbacks = [MetricsFile(run_dir / METRICS_FILE), bar, *job.callbacks]
        state = train_loop.fit(loop, checkpoint)
    final = source_losses(loop, corpus)
    ranks.wait()
    full_state = ranks.full_state_dict(model)  # FSDP: gathered from every process's shard
    job.model, job.tokenizer, job.is_main = model.eval(), tokenizer, ranks.is_main
    if not ranks.is_main:
        return {"process_index": ranks.rank, "steps": state.step}
    base = SCRATCH if config.stage == "pretrain" else config.model.name
    info = ArtifactInfo(base, config.method.name, stage=config.stage)
    artifact = save_artifact(model, tokenizer, run_dir, info, full_state)
    seconds = state.train_seconds
    return {
        **_losses(state, run_dir),
        "steps": state.step,
        "total_steps": state.total_steps,
        "processes": ranks.world,
        "tokens": state.tokens,
        "train_seconds": round(seconds, 3),
        "tokens_per_s": state.tokens / seconds if seconds else 0.0,
        "compute_params": n_compute,
        "total_params": trainable_parameters(model)[1],
        "train_flops": train_flops(n_compute, state.tokens),
        "peak_flops": peak * ranks.world,
        "mfu": mfu(n_compute, state.tokens, seconds, peak * ranks.world),
        "source_eval": _source_report(initial, final),
        "data": corpus.report(),
        "token_shards": corpus.folders,
        "adapter_path": str(artifact),
    }


def _losses(state: train_loop.TrainState, run_dir: Any) -> dict[str, Any]:
    metrics = read_metrics(run_dir / METRICS_FILE)
    plot = plot_loss_curve(metrics, run_dir / "loss_curve.png")
    window = [m["loss"] for m in metrics if m.get("kind") == "train"][-10:]
    return {
        "train_loss": sum(window) / len(window) if window else None,
        "eval_loss": state.eval_loss,
        "initial_eval_loss": state.initial_eval_loss,
        "eval_perplexity": perplexity(state.eval_loss),
        "initial_eval_perplexity": perplexity(state.initial_eval_loss),
        "loss_curve": str(plot) if plot else None,
    }


def _source_report(initial: dict[str, float | None], final: dict[str, float | None]) -> dict[str, Any]:
    return {
        name: {
            "initial_loss": initial.get(name),
            "loss": loss,
            "initial_perplexity": perplexity(initial.get(name)),
            "perplexity": perplexity(loss),
        }
        for name, loss in final.items()
    }
