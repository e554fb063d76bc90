"""`stage: ppo`: the PPO loop with lmfoundry's run folder, checkpoints and exact resume.

Each step takes `align.rollout_batch` prompts (the order is a pure function of seed and step,
as in SFT), samples responses, scores them with the reward model and runs `ppo.optimise`.
Every `training.eval_every` steps the policy answers a fixed held-out prompt set greedily and
its mean score and KL are logged (`kind: eval`); step 0 is the starting point. A checkpoint holds
the trainable tensors (adapter + value head), optimizer, scheduler, RNG and progress.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.config import FinetuneConfig
from lmfoundry.fsutil import atomic_dir, atomic_write_text

CHECKPOINT = "checkpoint"
EVAL_PROMPTS = 8


@dataclass
class PPOState:
    step: int = 0
    total_steps: int = 0
    train_seconds: float = 0.0
    last_eval_step: int = -1
    start_eval: dict[str, float] | None = None
    """Greedy held-out score and KL of the starting policy."""
    last_eval: dict[str, float] | None = None


@dataclass
class TrainSettings:
    optimizer: Any
    scheduler: Any
    minibatch: int
    max_grad_norm: float | None


def prompt_ids(config: FinetuneConfig, tokenizer: Any) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of the (train, held-out) prompts, cut from the start to leave room to answer."""
    from lmfoundry.finetune.data import _special_prefix, detect_format
    from lmfoundry.finetune.preference_data import render_pair
    from lmfoundry.finetune.sft import train_validation_records
    from lmfoundry.finetune.templates import render_prompt

    room = config.data.max_length - config.align.max_new_tokens
    if room < 1:
        raise LmfError("data.max_length must exceed align.max_new_tokens (prompts need room)")
    prefix = _special_prefix(tokenizer)

    def encode(record: dict[str, Any]) -> list[int]:
        if detect_format(record) == "preference":
            text = render_pair(record, config.data.template, tokenizer)[0]
        else:
            text = render_prompt(config.data.template, record, tokenizer)
        ids = prefix + list(tokenizer(text, add_special_tokens=False)["input_ids"])
        return ids[-room:]

    train, held_out = train_validation_records(config.data)
    return [encode(r) for r in train], [encode(r) for r in held_out[:EVAL_PROMPTS]]


def reward_model_fn(path: str, policy_tokenizer: Any) -> Any:
    """A RewardFn scoring prompt + response with a `stage: reward` run's model."""
    from lmfoundry.finetune.reward import load_reward_model, score_sequences

    model, tokenizer, _ = load_reward_model(path)
    if tokenizer.get_vocab() != policy_tokenizer.get_vocab():
        raise LmfError(
            f"the reward model {path} uses another tokenizer than the policy; train it on the same base"
        )
    pad = model.config.pad_token_id or 0

    def score(prompts: list[list[int]], responses: list[list[int]]) -> list[float]:
        return score_sequences(model, [p + r for p, r in zip(prompts, responses, strict=True)], pad)

    return score


def build_policy(config: FinetuneConfig) -> Any:
    """The policy (adapter on the starting model), its value head and its reference."""
    import copy
    from contextlib import nullcontext

    import torch

    from lmfoundry.finetune.artifacts import load_starting_point
    from lmfoundry.finetune.dpo import without_adapter
    from lmfoundry.finetune.methods import prepare_model
    from lmfoundry.finetune.ppo import Policy

    base, tokenizer = load_starting_point(config.model.name)
    reference = copy.deepcopy(base).eval() if config.method.name == "full" else None
    model = prepare_model(base, config.method, 1, config.training.seed)  # total steps: AdaLoRA only
    torch.manual_seed(config.training.seed)
    value_head = torch.nn.Linear(model.config.hidden_size, 1)
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    if reference is None:
        return Policy(model, value_head, tokenizer, lambda: without_adapter(model), model)
    return Policy(model, value_head, tokenizer, nullcontext, reference)


def run_ppo(
    config: FinetuneConfig, run_dir: Path, *, resume: bool, progress: bool, reward_fn: Any = None
) -> dict[str, Any]:
    """Train the policy with PPO as `config` says; return the stage summary."""
    import torch

    from lmfoundry.finetune import trainer as sft_trainer
    from lmfoundry.finetune.artifacts import ArtifactInfo, base_reference, save_artifact
    from lmfoundry.finetune.callbacks import truncate_metrics
    from lmfoundry.finetune.distributed import launched_world_size
    from lmfoundry.finetune.methods import trainable_parameters

    if launched_world_size() > 1:
        raise LmfError("stage ppo runs in one process: start it without accelerate launch / torchrun")
    t, a = config.training, config.align
    policy = build_policy(config)
    train_prompts, eval_prompts = prompt_ids(config, policy.tokenizer)
    total = t.max_steps or max(1, t.epochs * -(-len(train_prompts) // a.rollout_batch))
    reward_fn = reward_fn or reward_model_fn(str(a.reward_model), policy.tokenizer)
    params = [p for p in policy.model.parameters() if p.requires_grad] + list(policy.value_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    scheduler = sft_trainer.make_scheduler(optimizer, t, total)
    settings = TrainSettings(optimizer, scheduler, t.batch_size, t.max_grad_norm)
    state = PPOState(total_steps=total)
    if resume:
        state = load_checkpoint(run_dir / CHECKPOINT, policy, settings)
        truncate_metrics(run_dir / "metrics.jsonl", state.step)
    else:
        torch.manual_seed(t.seed)
    loop = _Loop(config, policy, settings, state, reward_fn, train_prompts, eval_prompts, run_dir)
    loop.run(progress)
    info = ArtifactInfo(
        base_reference(config.model.name), config.method.name, stage="ppo", template=config.data.template
    )
    artifact = save_artifact(policy.model, policy.tokenizer, run_dir, info)
    trained, total_params = trainable_parameters(policy.model)
    return {
        "steps": state.step,
        "train_seconds": round(state.train_seconds, 3),
        "eval_before": state.start_eval,
        "eval_after": state.last_eval,
        "trainable_params": trained,
        "total_params": total_params,
        "adapter_path": str(artifact),
    }


@dataclass
class _Loop:
    config: FinetuneConfig
    policy: Any
    settings: TrainSettings
    state: PPOState
    reward_fn: Any
    train_prompts: list[list[int]]
    eval_prompts: list[list[int]]
    run_dir: Path

    def write(self, record: dict[str, Any]) -> None:
        with (self.run_dir / "metrics.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def evaluate(self) -> None:
        from lmfoundry.finetune import ppo

        if not self.eval_prompts:
            return
        rollout = ppo.sample(self.policy, self.eval_prompts, self.config.align, greedy=True)
        stats = ppo.rollout_stats(
            ppo.score_rollout(self.policy, rollout, self.reward_fn, self.config.align),
            self.config.align.kl_coef,
        )
        self.state.last_eval, self.state.last_eval_step = stats, self.state.step
        if self.state.step == 0:
            self.state.start_eval = stats
        self.write({"kind": "eval", "step": self.state.step, **{f"eval_{k}": v for k, v in stats.items()}})

    def step(self) -> dict[str, Any]:
        from lmfoundry.finetune import ppo
        from lmfoundry.finetune.trainer import micro_batch

        a, s = self.config.align, self.state
        prompts = micro_batch(self.train_prompts, s.step, a.rollout_batch, self.config.training.seed)
        rollout = ppo.sample(self.policy, list(prompts), a)
        batch = ppo.score_rollout(self.policy, rollout, self.reward_fn, a)
        losses = ppo.optimise(self.policy, batch, a, self.settings)
        self.settings.scheduler.step()
        s.step += 1
        return {
            "kind": "train",
            "step": s.step,
            **ppo.rollout_stats(batch, a.kl_coef),
            **losses,
            "lr": self.settings.scheduler.get_last_lr()[0],
        }

    def run(self, progress: bool) -> None:
        import torch

        t, s = self.config.training, self.state
        bar = _bar(s.total_steps, s.step, progress)
        rng = torch.get_rng_state()
        try:
            with bar:
                if s.step == 0 and s.last_eval_step != 0:
                    self.evaluate()
                while s.step < s.total_steps:
                    started = time.perf_counter()
                    record = self.step()
                    rng = torch.get_rng_state()
                    s.train_seconds += time.perf_counter() - started
                    self.write(record)
                    bar.update(s.step, record)
                    if t.eval_every and s.step % t.eval_every == 0 and s.step < s.total_steps:
                        self.evaluate()
                    if t.save_every and s.step % t.save_every == 0:
                        save_checkpoint(self.run_dir / CHECKPOINT, self.policy, self.settings, s)
        except KeyboardInterrupt:
            save_checkpoint(self.run_dir / CHECKPOINT, self.policy, self.settings, s, rng)
            raise
        self.evaluate()
        save_checkpoint(self.run_dir / CHECKPOINT, self.policy, self.settings, s)


class _bar:
    """The progress bar of a PPO run: step, score, KL, ETA."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("ppo"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self.task = self.progress.add_task("ppo", total=total, completed=done, info="")

    def __enter__(self) -> _bar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, step: int, record: dict[str, Any]) -> None:
        info = f"score {record['score']:.3f}  kl {record['kl']:.3f}  loss {record['loss']:.3f}"
        self.progress.update(self.task, completed=step, info=info)


def _trainable(policy: Any) -> dict[str, Any]:
    tensors = {
        f"policy.{n}": p.detach().clone() for n, p in policy.model.named_parameters() if p.requires_grad
    }
    tensors.update({f"value_head.{n}": p.detach().clone() for n, p in policy.value_head.named_parameters()})
    return tensors


def save_checkpoint(
    folder: Path, policy: Any, settings: TrainSettings, state: PPOState, rng: Any = None
) -> None:
    import torch

    with atomic_dir(folder) as tmp:
        torch.save(
            {
                "trainable": _trainable(policy),
                "optimizer": settings.optimizer.state_dict(),
                "scheduler": settings.scheduler.state_dict(),
                "rng": rng if rng is not None else torch.get_rng_state(),
            },
            tmp / "state.pt",
        )
        atomic_write_text(tmp / "trainer_state.json", json.dumps(asdict(state), indent=2))


def load_checkpoint(folder: Path, policy: Any, settings: TrainSettings) -> PPOState:
    import torch

    from lmfoundry.finetune.trainer import restore_tensors

    if not (folder / "state.pt").is_file():
        raise LmfError(f"no PPO checkpoint to resume in {folder}")
    saved = torch.load(folder / "state.pt", weights_only=False)
    params = {f"policy.{n}": p for n, p in policy.model.named_parameters()}
    params.update({f"value_head.{n}": p for n, p in policy.value_head.named_parameters()})
    restore_tensors(params, saved["trainable"], folder)
    settings.optimizer.load_state_dict(saved["optimizer"])
    settings.scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])
    return PPOState(**json.loads((folder / "trainer_state.json").read_text(encoding="utf-8")))
