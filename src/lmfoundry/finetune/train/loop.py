"""A small training loop whose state is a step counter, so resuming is exact.

Data order is a pure function of (seed, epoch): micro-batch k of the run is batch k % n of the
permutation for epoch k // n, so after step s the loop continues at micro-batch
s * grad_accumulation with no data-loader state to save. A checkpoint holds the trainable
tensors, the optimizer and scheduler state, the torch RNG state (dropout) and `TrainState`;
loading it and continuing gives the same losses and weights as an uninterrupted run.
A KeyboardInterrupt saves a checkpoint of the last completed step before it propagates.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from lmfoundry.errors import LmfError
from lmfoundry.finetune.data.tokenize import collate
from lmfoundry.finetune.train.distributed import Ranks
from lmfoundry.finetune.train.loss import chunked_loss
from lmfoundry.fsutil import atomic_dir, atomic_write_text

if TYPE_CHECKING:
    import torch

    from lmfoundry.finetune.config import TrainingConfig

Example = Mapping[str, list[int]]
T = TypeVar("T")


@dataclass
class TrainState:
    """Everything about progress that is not a tensor."""

    step: int = 0
    total_steps: int = 0
    tokens: int = 0
    """Input tokens (padding excluded) processed so far."""
    train_seconds: float = 0.0
    last_loss: float | None = None
    best_eval_loss: float | None = None
    evals_without_improvement: int = 0
    eval_loss: float | None = None
    initial_eval_loss: float | None = None
    """Eval loss before the first step: the base (untrained adapter) model's, for comparison."""
    eval_step: int = -1
    """The step of the latest evaluation (a resumed run repeats one cut off by an interrupt)."""
    stopped_early: bool = False


class Callback(Protocol):
    """Hooks the loop calls; progress bars and metric files implement them."""

    def on_step(self, state: TrainState, record: dict[str, Any]) -> None: ...

    def on_eval(self, state: TrainState, record: dict[str, Any]) -> None: ...


@dataclass
class Loop:
    """The pieces of one training run (built by `make_loop`)."""

    model: Any
    """The model itself (peft-wrapped): its state is what checkpoints and artifacts hold."""
    train: Sequence[Example]
    eval: Sequence[Example]
    config: TrainingConfig
    pad_id: int
    optimizer: Any
    scheduler: Any
    state: TrainState
    callbacks: list[Callback] = field(default_factory=list)
    extra_loss: Any = None
    """Optional fn(model) -> tensor added to the loss (AdaLoRA's orthogonality term)."""
    after_backward: Any = None
    """Optional fn(model, step) after backward, before zero_grad (AdaLoRA's rank budget)."""
    ranks: Ranks = field(default_factory=Ranks)
    forward_model: Any = None
    """What forward/backward run on: `model`, or its DDP/FSDP wrapper under a launcher."""

    def __post_init__(self) -> None:
        if self.forward_model is None:
            self.forward_model = self.model


def micro_batches_per_epoch(n_examples: int, batch_size: int) -> int:
    return math.ceil(n_examples / batch_size)


def total_steps(n_examples: int, config: TrainingConfig, world: int = 1) -> int:
    """Optimizer steps of the run (`world` processes each take one micro-batch per slot)."""
    if config.max_steps:
        return config.max_steps
    per_epoch = micro_batches_per_epoch(n_examples, config.batch_size)
    return max(1, math.ceil(config.epochs * per_epoch / (config.grad_accumulation * world)))


def micro_batch(examples: Sequence[T], k: int, batch_size: int, seed: int) -> list[T]:
    """The k-th micro-batch of the run: a pure function of (k, seed), hence resumable."""
    import torch

    per_epoch = micro_batches_per_epoch(len(examples), batch_size)
    epoch, position = divmod(k, per_epoch)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(examples), generator=generator).tolist()
    return [examples[i] for i in order[position * batch_size : (position + 1) * batch_size]]


def make_optimizer(model: Any, config: TrainingConfig) -> Any:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise LmfError("the model has no trainable parameters")
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(step: int, config: TrainingConfig, total: int) -> float:
    """Learning-rate multiplier: linear warmup, then linear/cosine decay to 0, or constant."""
    if step < config.warmup_steps:
        return (step + 1) / (config.warmup_steps + 1)
    if config.scheduler == "constant":
        return 1.0
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    if config.scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return max(0.0, 1.0 - progress)


def make_scheduler(optimizer: Any, config: TrainingConfig, total: int) -> Any:
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config, total))


def make_loop(
    model: Any,
    train: Sequence[Example],
    eval_set: Sequence[Example],
    config: TrainingConfig,
    pad_id: int,
    callbacks: list[Callback] | None = None,
    ranks: Ranks | None = None,
) -> Loop:
    """Optimizer, scheduler and state for training `model`; `ranks` for a multi-process run.

    Under a launcher the processes split each optimizer step's micro-batches, so one epoch is
    `world` times fewer steps.
    """
    if not train:
        raise LmfError("no training examples")
    ranks = ranks or Ranks()
    total = total_steps(len(train), config, ranks.world)
    ranks.shard(model)
    forward_model, optimizer = ranks.prepare(model, make_optimizer(model, config))
    scheduler = make_scheduler(optimizer, config, total)
    return Loop(
        model,
        train,
        eval_set,
        config,
        pad_id,
        optimizer,
        scheduler,
        TrainState(total_steps=total),
        callbacks or [],
        ranks=ranks,
        forward_model=forward_model,
    )


def train_step(loop: Loop) -> float:
    """One optimizer step over `grad_accumulation` micro-batches; returns the mean loss."""

    cfg, model, ranks = loop.config, loop.model, loop.ranks
    loop.forward_model.train()
    losses, tokens = [], 0
    for j in range(cfg.grad_accumulation):
        # global micro-batch index: the processes of a launched run take consecutive ones
        k = (loop.state.step * cfg.grad_accumulation + j) * ranks.world + ranks.rank
        batch = collate(micro_batch(loop.train, k, cfg.batch_size, cfg.seed), loop.pad_id)
        batch = on_device_of(loop.forward_model, batch)
        with autocast(cfg.precision):
            loss, _ = chunked_loss(loop.forward_model, batch, cfg.loss_chunk)
        if loop.extra_loss is not None:
            loss = loss + loop.extra_loss(model)
        ranks.backward(loss / cfg.grad_accumulation)
        losses.append(float(loss.detach()))
        tokens += int(batch["attention_mask"].sum())
    if cfg.max_grad_norm:
        params = [p for group in loop.optimizer.param_groups for p in group["params"]]
        ranks.clip_grad_norm(params, cfg.max_grad_norm)
    loop.optimizer.step()
    if loop.after_backward is not None:
        loop.after_backward(model, loop.state.step)
    loop.optimizer.zero_grad(set_to_none=True)
    loop.scheduler.step()
    loop.state.step += 1
    loop.state.tokens += int(ranks.total(tokens))
    return ranks.mean(sum(losses) / len(losses))


def on_device_of(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """`batch` moved to where `model`'s weights are (a GPU under accelerate; a no-op on CPU)."""
    device = next(model.parameters()).device
    return {key: value.to(device) for key, value in batch.items()}


def autocast(precision: str) -> Any:
    """bf16 autocast on CPU for precision "bf16"; a no-op context for fp32."""
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def eval_loss_sums(
    model: Any,
    examples: Sequence[Example],
    batch_size: int,
    pad_id: int,
    chunk: int,
    precision: str = "fp32",
    *,
    batches: int = 0,
    filler: Example | None = None,
) -> tuple[float, int]:
    """(summed cross-entropy, target tokens) over `examples`: sums add up across processes.

    `batches`: run at least this many forward passes, the extra ones on `filler` and not counted
    (under FSDP every forward is a collective, so all processes must run as many).
    """
    import torch

    model.eval()
    total, count = 0.0, 0
    n_batches = max(math.ceil(len(examples) / batch_size), batches)
    with torch.no_grad():
        for start in range(0, n_batches * batch_size, batch_size):
            part = list(examples[start : start + batch_size])
            batch = on_device_of(model, collate(part or [filler or {"input_ids": [pad_id, pad_id]}], pad_id))
            with autocast(precision):
                loss, n = chunked_loss(model, batch, chunk)
            if part:
                total, count = total + float(loss) * n, count + n
    return total, count


def shared_eval_loss(loop: Loop, examples: Sequence[Example]) -> float | None:
    """Mean held-out loss of `examples`, each process evaluating every world-th one."""
    cfg, ranks = loop.config, loop.ranks
    share = examples[ranks.rank :: ranks.world]
    # the bare model (DDP shares its parameter tensors), not the wrapper: a DDP forward may
    # broadcast buffers, a collective, and the shares can differ in batch count; under FSDP
    # forwards are collectives, so every process runs the largest share's batch count
    batches = math.ceil(math.ceil(len(examples) / ranks.world) / cfg.batch_size) if ranks.sharded else 0
    filler = examples[0] if len(examples) else None
    total, count = eval_loss_sums(
        loop.model,
        share,
        cfg.batch_size,
        loop.pad_id,
        cfg.loss_chunk,
        cfg.precision,
        batches=batches,
        filler=filler,
    )
    total, count = ranks.total(total), int(ranks.total(count))
    return total / count if count else None


def run_eval(loop: Loop) -> None:
    """Measure the eval loss (each process a share of the set) and update early stopping."""
    cfg, state = loop.config, loop.state
    loss = shared_eval_loss(loop, loop.eval)
    state.eval_loss, state.eval_step = loss, state.step
    if state.step == 0:
        state.initial_eval_loss = loss
    if loss is not None:
        if state.best_eval_loss is None or loss < state.best_eval_loss:
            state.best_eval_loss, state.evals_without_improvement = loss, 0
        else:
            state.evals_without_improvement += 1
        patience = cfg.early_stopping_patience
        state.stopped_early = patience is not None and state.evals_without_improvement >= patience
    for callback in loop.callbacks:
        callback.on_eval(state, {"step": state.step, "eval_loss": loss})


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def fit(loop: Loop, checkpoint_dir: Path | None = None) -> TrainState:
    """Train from `loop.state.step` to the end (or early stop); checkpoint as configured.

    On KeyboardInterrupt the state of the last completed step (including the RNG state from
    before the interrupted step) is checkpointed, then the interrupt propagates.
    """
    import torch

    cfg, state = loop.config, loop.state
    rng_at_step = torch.get_rng_state()
    try:
        if state.eval_step != state.step and (state.step == 0 or _due(state.step, cfg.eval_every)):
            run_eval(loop)  # the baseline at step 0, or one an interrupt cut off
        while state.step < state.total_steps and not state.stopped_early:
            started = time.perf_counter()
            tokens_before = state.tokens
            state.last_loss = train_step(loop)
            rng_at_step = torch.get_rng_state()
            elapsed = time.perf_counter() - started
            state.train_seconds += elapsed
            record = {
                "step": state.step,
                "loss": state.last_loss,
                "lr": loop.scheduler.get_last_lr()[0],
                "tokens": state.tokens,
                "tokens_per_s": (state.tokens - tokens_before) / elapsed if elapsed > 0 else 0.0,
            }
            for callback in loop.callbacks:
                callback.on_step(state, record)
            if _due(state.step, cfg.eval_every) and state.step < state.total_steps:
                run_eval(loop)
            if checkpoint_dir is not None and _due(state.step, cfg.save_every):
                _save_on_main(loop, checkpoint_dir)
    except KeyboardInterrupt:
        if checkpoint_dir is not None:
            _save_on_main(loop, checkpoint_dir, rng_state=rng_at_step)
        raise
    run_eval(loop)
    if checkpoint_dir is not None:
        _save_on_main(loop, checkpoint_dir)
    return state


def _save_on_main(loop: Loop, folder: Path, rng_state: torch.Tensor | None = None) -> None:
    """Checkpoint from the main process only: the trainable tensors are equal on every process.

    Under FSDP no checkpoint is written: each process holds a shard of the weights and of the
    optimizer state (the final artifact is gathered; see `Ranks.full_state_dict`)."""
    if loop.ranks.is_main and not loop.ranks.sharded:
        save_checkpoint(loop, folder, rng_state=rng_state)


# --------------------------------------------------------------------------- checkpoints


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(loop: Loop, folder: Path, rng_state: torch.Tensor | None = None) -> Path:
    """Write the resumable state of `loop` into `folder` atomically (replacing an older one)."""
    import torch

    with atomic_dir(folder) as tmp:
        torch.save(
            {
                "trainable": trainable_state(loop.model),
                "optimizer": loop.optimizer.state_dict(),
                "scheduler": loop.scheduler.state_dict(),
                "rng": rng_state if rng_state is not None else torch.get_rng_state(),
                "extra": _extra_state(loop.model),
            },
            tmp / "state.pt",
        )
        atomic_write_text(tmp / "trainer_state.json", json.dumps(asdict(loop.state), indent=2))
    return folder


def load_checkpoint(loop: Loop, folder: Path) -> TrainState:
    """Restore tensors, optimizer, scheduler, RNG and progress saved by `save_checkpoint`."""
    import torch

    if loop.ranks.sharded:
        raise LmfError("--resume is not supported under FSDP (no resumable checkpoint is written there)")
    if not (folder / "state.pt").is_file():
        raise LmfError(f"no checkpoint to resume in {folder}")
    saved = torch.load(folder / "state.pt", weights_only=False)
    restore_tensors(dict(loop.model.named_parameters()), saved["trainable"], folder)
    loop.optimizer.load_state_dict(saved["optimizer"])
    loop.scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])
    _load_extra_state(loop.model, saved.get("extra"))
    data = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    loop.state = TrainState(**data)
    return loop.state


def restore_tensors(params: dict[str, Any], saved: dict[str, Any], folder: Path) -> None:
    """Copy checkpointed tensors into `params` by name; refuse a checkpoint of another model."""
    import torch

    unknown = sorted(set(saved) - set(params))
    if unknown:
        raise LmfError(
            f"checkpoint {folder} does not fit this model (unknown tensors: {', '.join(unknown[:3])})"
        )
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value)


def _extra_state(model: Any) -> dict[str, Any] | None:
    """AdaLoRA keeps importance statistics and the rank pattern outside the parameters."""
    allocator = getattr(getattr(model, "base_model", None), "rankallocator", None)
    if allocator is None:
        return None
    config = model.peft_config[model.active_adapter]
    return {
        "ipt": allocator.ipt,
        "exp_avg_ipt": allocator.exp_avg_ipt,
        "exp_avg_unc": allocator.exp_avg_unc,
        "rank_pattern": config.rank_pattern,
    }


def _load_extra_state(model: Any, extra: dict[str, Any] | None) -> None:
    if not extra:
        return
    allocator = model.base_model.rankallocator
    allocator.ipt, allocator.exp_avg_ipt, allocator.exp_avg_unc = (
        extra["ipt"],
        extra["exp_avg_ipt"],
        extra["exp_avg_unc"],
    )
    model.peft_config[model.active_adapter].rank_pattern = extra["rank_pattern"]
