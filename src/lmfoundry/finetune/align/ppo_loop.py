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
from lmfoundry.finetune.align import ppo
from lmfoundry.finetune.align.dpo import without_adapter
from lmfoundry.finetune.align.ppo import Policy
from lmfoundry.finetune.align.reward import load_reward_model, score_sequences
from lmfoundry.finetune.config import FinetuneConfig
from lmfoundry.finetune.data.formats import detect_format
from lmfoundry.finetune.data.preferences import render_pair
from lmfoundry.finetune.data.records import train_validation_records
from lmfoundry.finetune.data.templates import render_prompt
from lmfoundry.finetune.data.tokenize import special_prefix
from lmfoundry.finetune.train import loop as train_loop
from lmfoundry.finetune.train.artifacts import (
    ArtifactInfo,
    base_reference,
    load_starting_point,
    save_artifact,
)
from lmfoundry.finetune.train.callbacks import (
    CHECKPOINT_DIR,
    METRICS_FILE,
    StageProgress,
    append_metrics,
    metrics_line,
    plot_stage_curves,
    truncate_metrics,
)
from lmfoundry.finetune.train.distributed import launched_world_size
from lmfoundry.finetune.train.methods import prepare_model, trainable_parameters
from lmfoundry.finetune.train.stage import StageJob
from lmfoundry.fsutil import atomic_dir, atomic_write_text

EVAL_PROMPTS = 8
PANELS = [("reward", ["reward", "score"]), ("KL to reference", ["kl"]), ("losses", ["pg_loss", "vf_loss"])]
"""The panels of curves.png."""


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

    room = config.data.max_length - config.align.max_new_tokens
    if room < 1:
        raise LmfError("data.max_length must exceed align.max_new_tokens (prompts need room)")
    prefix = special_prefix(tokenizer)

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


def run_ppo(job: StageJob, reward_fn: Any = None) -> dict[str, Any]:
    """The `ppo` stage runner: train the policy with PPO as the config says.

    `reward_fn(prompts, responses) -> scores` replaces the `align.reward_model` run (tests use it).
    """
    import torch

    if launched_world_size() > 1:
        raise LmfError("stage ppo runs in one process: start it without accelerate launch / torchrun")
    config, run_dir = job.config, job.run_dir
    t, a = config.training, config.align
    policy = build_policy(config)
    train_prompts, eval_prompts = prompt_ids(config, policy.tokenizer)
    total = t.max_steps or max(1, t.epochs * -(-len(train_prompts) // a.rollout_batch))
    reward_fn = reward_fn or reward_model_fn(str(a.reward_model), policy.tokenizer)
    params = [p for p in policy.model.parameters() if p.requires_grad] + list(policy.value_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    settings = TrainSettings(
        optimizer, train_loop.make_scheduler(optimizer, t, total), t.batch_size, t.max_grad_norm
    )
    state = PPOState(total_steps=total)
    if job.resume:
        state = load_checkpoint(run_dir / CHECKPOINT_DIR, policy, settings)
        truncate_metrics(run_dir / METRICS_FILE, state.step)
    else:
        torch.manual_seed(t.seed)
    _Loop(config, policy, settings, state, reward_fn, train_prompts, eval_prompts, run_dir).run(job.progress)
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
        "curves": plot_stage_curves(run_dir, PANELS),
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
        append_metrics(self.run_dir / METRICS_FILE, record)

    def evaluate(self) -> None:
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
        a, s = self.config.align, self.state
        prompts = train_loop.micro_batch(
            self.train_prompts, s.step, a.rollout_batch, self.config.training.seed
        )
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
        bar = StageProgress("ppo", s.total_steps, s.step, enabled=progress)
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
                    bar.update(s.step, metrics_line(record, ("score", "kl", "loss")))
                    if t.eval_every and s.step % t.eval_every == 0 and s.step < s.total_steps:
                        self.evaluate()
                    if t.save_every and s.step % t.save_every == 0:
                        save_checkpoint(self.run_dir / CHECKPOINT_DIR, self.policy, self.settings, s)
        except KeyboardInterrupt:
            save_checkpoint(self.run_dir / CHECKPOINT_DIR, self.policy, self.settings, s, rng)
            raise
        self.evaluate()
        save_checkpoint(self.run_dir / CHECKPOINT_DIR, self.policy, self.settings, s)


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

    if not (folder / "state.pt").is_file():
        raise LmfError(f"no PPO checkpoint to resume in {folder}")
    saved = torch.load(folder / "state.pt", weights_only=False)
    params = {f"policy.{n}": p for n, p in policy.model.named_parameters()}
    params.update({f"value_head.{n}": p for n, p in policy.value_head.named_parameters()})
    train_loop.restore_tensors(params, saved["trainable"], folder)
    settings.optimizer.load_state_dict(saved["optimizer"])
    settings.scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])
    return PPOState(**json.loads((folder / "trainer_state.json").read_text(encoding="utf-8")))
