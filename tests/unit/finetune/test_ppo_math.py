"""PPO arithmetic against hand computations (independent loops over plain Python floats)."""

from __future__ import annotations

import math

import pytest
import torch

from lmfoundry.finetune.align import ppo_math


def _gae_by_hand(rewards: list[float], values: list[float], gamma: float, lam: float) -> list[float]:
    """A_t = sum_k (gamma*lam)^k delta_{t+k}, delta_t = r_t + gamma V_{t+1} - V_t, V past the end = 0."""
    n = len(rewards)
    deltas = [rewards[t] + gamma * (values[t + 1] if t + 1 < n else 0.0) - values[t] for t in range(n)]
    return [sum((gamma * lam) ** k * deltas[t + k] for k in range(n - t)) for t in range(n)]


def test_gae_matches_the_definition_and_ignores_padding() -> None:
    rewards = torch.tensor([[0.1, -0.2, 1.0, 9.0], [0.5, 0.0, 0.0, 0.0]])
    values = torch.tensor([[0.3, 0.2, 0.4, 7.0], [0.1, 5.0, 5.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    advantages, returns = ppo_math.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    first = _gae_by_hand([0.1, -0.2, 1.0], [0.3, 0.2, 0.4], 0.9, 0.8)
    second = _gae_by_hand([0.5], [0.1], 0.9, 0.8)
    assert advantages[0, :3].tolist() == pytest.approx(first)
    assert advantages[1, :1].tolist() == pytest.approx(second)
    assert advantages[0, 3] == 0 and advantages[1, 1:].abs().sum() == 0
    assert returns[0, :3].tolist() == pytest.approx(
        [a + v for a, v in zip(first, [0.3, 0.2, 0.4], strict=True)]
    )


def test_gamma_lambda_one_gives_reward_to_go_minus_value() -> None:
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    advantages, _ = ppo_math.gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert advantages[0].tolist() == pytest.approx([6 - 0.5, 5 - 0.5, 3 - 0.5])


def test_token_rewards_put_the_score_on_the_last_token_and_charge_kl_everywhere() -> None:
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0, -3.0], [-2.0, -2.0, -2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    rewards, kl = ppo_math.token_rewards(torch.tensor([2.0, -1.0]), logprobs, ref, mask, kl_coef=0.1)
    assert torch.allclose(kl, torch.tensor([[0.5, -1.0, 0.0], [1.0, 1.0, 1.0]]))
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.1 + 2.0, 0.0], [-0.1, -0.1, -0.1 - 1.0]]))


def test_policy_loss_clips_the_ratio() -> None:
    old = torch.zeros(1, 2)
    new = torch.tensor([[math.log(1.5), math.log(0.5)]])
    advantages = torch.tensor([[1.0, -1.0]])
    loss, clipfrac, _ = ppo_math.policy_loss(new, old, advantages, torch.ones(1, 2), clip=0.2)
    # loss = mean over tokens of max(-A * r, -A * clip(r, 0.8, 1.2))
    by_hand = (max(-1.0 * 1.5, -1.0 * 1.2) + max(1.0 * 0.5, 1.0 * 0.8)) / 2
    assert float(loss) == pytest.approx(by_hand)
    assert float(clipfrac) == pytest.approx(1.0)


def test_value_loss_takes_the_worse_of_clipped_and_plain() -> None:
    values, old, returns = torch.tensor([[2.0]]), torch.tensor([[0.0]]), torch.tensor([[2.0]])
    loss = ppo_math.value_loss(values, old, returns, torch.ones(1, 1), clip=0.5)
    assert float(loss) == pytest.approx(0.5 * (0.5 - 2.0) ** 2)


def test_whiten_uses_masked_entries_only() -> None:
    values = torch.tensor([[1.0, 3.0, 100.0]])
    white = ppo_math.masked_whiten(values, torch.tensor([[1.0, 1.0, 0.0]]))
    assert white[0].tolist() == pytest.approx([-1.0, 1.0, 0.0], abs=1e-4)
