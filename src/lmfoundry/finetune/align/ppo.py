"""One PPO step for a causal LM: sample rollouts, score them, estimate advantages, optimise.

trl 1.x removed its PPO trainer (GRPO/RLOO replaced it), so the step lives here, built from
the pure functions in `ppo_math.py`. The policy is the (LoRA-wrapped) model; the reference is
the same model with the adapter switched off (or a frozen copy for full fine-tuning); the value
function is a linear head on the policy's last hidden state, sharing its backbone. Rewards
come from any `RewardFn` (a trained reward model in `ppo_run.py`; a rule in tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmfoundry.finetune.align import ppo_math
from lmfoundry.finetune.train.loss import hidden_states_out

if TYPE_CHECKING:
    import torch

    from lmfoundry.finetune.config import AlignConfig

RewardFn = Callable[[list[list[int]], list[list[int]]], list[float]]
"""(prompt token lists, response token lists incl. EOS) -> one score per response."""


@dataclass
class Policy:
    model: Any
    value_head: Any
    tokenizer: Any
    reference: Callable[[], AbstractContextManager[Any]]
    """Context in which `reference_model` computes the reference log-probs."""
    reference_model: Any


@dataclass
class Rollout:
    input_ids: torch.Tensor
    """(batch, prompt_width + response_length): left-padded prompts, then responses."""
    attention_mask: torch.Tensor
    prompt_width: int
    mask: torch.Tensor
    """(batch, response_length) float: 1 on response tokens up to and including the first EOS."""
    prompts: list[list[int]]
    responses: list[list[int]]


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def sample(policy: Policy, prompts: list[list[int]], options: AlignConfig, greedy: bool = False) -> Rollout:
    """Generate one response per prompt with the policy (sampling, or greedy for evaluation)."""
    import torch

    tok = policy.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids, mask = left_pad(prompts, pad_id)
    policy.model.eval()
    with torch.no_grad():
        # Pure sampling from the policy (no top-k/top-p): PPO's log-probs are of that distribution.
        sampling = (
            {"do_sample": False}
            if greedy
            else {"do_sample": True, "temperature": options.temperature, "top_k": 0, "top_p": 1.0}
        )
        output = policy.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=options.max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=tok.eos_token_id,
            **sampling,
        )
    response = output[:, ids.shape[1] :]
    is_eos = (response == tok.eos_token_id).long()
    after_eos = (is_eos.cumsum(dim=1) - is_eos) > 0
    response_mask = (~after_eos).float()
    responses = [row[: int(m.sum())].tolist() for row, m in zip(response, response_mask, strict=True)]
    full_mask = torch.cat([mask, response_mask.long()], dim=1)
    return Rollout(output, full_mask, ids.shape[1], response_mask, prompts, responses)


def response_logprobs(
    model: Any, value_head: Any, rollout: Rollout, temperature: float, rows: Any = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log pi of each response token, value before each token or None without a value head)."""
    import torch

    ids = rollout.input_ids if rows is None else rollout.input_ids[rows]
    attention = rollout.attention_mask if rows is None else rollout.attention_mask[rows]
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    with hidden_states_out(model) as head:
        hidden = model(
            input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=False
        ).logits
    states = hidden[:, rollout.prompt_width - 1 : -1]
    logits = head(states).float() / temperature
    targets = ids[:, rollout.prompt_width :]
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    values = value_head(states.float()).squeeze(-1) if value_head is not None else None
    return logprobs, values


@dataclass
class Batch:
    """A scored rollout with everything the optimisation epochs need."""

    rollout: Rollout
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    scores: torch.Tensor
    kl: torch.Tensor


def score_rollout(policy: Policy, rollout: Rollout, reward_fn: RewardFn, options: AlignConfig) -> Batch:
    """Old log-probs and values, reference log-probs, scores, KL-shaped rewards and GAE."""
    import torch

    with torch.no_grad():
        logprobs, values = response_logprobs(policy.model, policy.value_head, rollout, options.temperature)
        with policy.reference():
            ref_logprobs, _ = response_logprobs(policy.reference_model, None, rollout, options.temperature)
    assert values is not None
    scores = torch.tensor(reward_fn(rollout.prompts, rollout.responses), dtype=torch.float32)
    rewards, kl = ppo_math.token_rewards(scores, logprobs, ref_logprobs, rollout.mask, options.kl_coef)
    advantages, returns = ppo_math.gae(rewards, values, rollout.mask, options.gamma, options.lam)
    advantages = ppo_math.masked_whiten(advantages, rollout.mask)
    return Batch(rollout, logprobs, values * rollout.mask, advantages, returns, scores, kl)


def optimise(policy: Policy, batch: Batch, options: AlignConfig, train: Any) -> dict[str, float]:
    """`options.ppo_epochs` passes of clipped PPO over the batch in shuffled minibatches."""
    import torch

    model, mask = policy.model, batch.rollout.mask
    model.train()
    params = [p for group in train.optimizer.param_groups for p in group["params"]]
    totals = {"pg_loss": 0.0, "vf_loss": 0.0, "loss": 0.0, "clipfrac": 0.0, "approx_kl": 0.0}
    updates = 0
    n = mask.shape[0]
    for _ in range(options.ppo_epochs):
        for rows in torch.randperm(n).split(train.minibatch):
            logprobs, values = response_logprobs(
                model, policy.value_head, batch.rollout, options.temperature, rows
            )
            assert values is not None
            m = mask[rows]
            pg, clipfrac, approx_kl = ppo_math.policy_loss(
                logprobs, batch.logprobs[rows], batch.advantages[rows], m, options.cliprange
            )
            vf = ppo_math.value_loss(
                values, batch.values[rows], batch.returns[rows], m, options.cliprange_value
            )
            loss = pg + options.vf_coef * vf
            loss.backward()
            if train.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, train.max_grad_norm)
            train.optimizer.step()
            train.optimizer.zero_grad(set_to_none=True)
            for key, value in (("pg_loss", pg), ("vf_loss", vf), ("loss", loss), ("clipfrac", clipfrac)):
                totals[key] += float(value.detach())
            totals["approx_kl"] += float(approx_kl.detach())
            updates += 1
    model.eval()
    return {key: value / max(1, updates) for key, value in totals.items()}


def rollout_stats(batch: Batch, kl_coef: float) -> dict[str, float]:
    """Mean score, KL to the reference (summed over tokens), total reward and response length."""
    kl = batch.kl.sum(dim=1)
    return {
        "score": float(batch.scores.mean()),
        "kl": float(kl.mean()),
        "reward": float((batch.scores - kl_coef * kl).mean()),
        "response_tokens": float(batch.rollout.mask.sum(dim=1).mean()),
    }
