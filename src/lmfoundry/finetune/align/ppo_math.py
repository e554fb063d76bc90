"""The arithmetic of PPO for language models, as pure tensor functions (easy to test by hand).

Shapes are (batch, response_length); `mask` is 1 on response tokens up to and including the
first EOS and 0 after. Conventions follow the RLHF recipe of Ziegler et al. (2019) and
Ouyang et al. (2022) as trl's former PPO trainer implemented it:

- per-token reward = -kl_coef * (log pi - log pi_ref), plus the reward model's score on the
  last response token;
- generalized advantage estimation (Schulman et al. 2016) with discount gamma and lambda;
- clipped surrogate policy loss and clipped value loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(values - mean) / std over the masked entries; the entries outside the mask become 0."""
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * (variance + eps).rsqrt() * mask


def token_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token rewards, per-token KL estimate log pi - log pi_ref), both zero outside `mask`.

    The sequence score lands on the last response token; every token pays the KL penalty.
    """
    import torch

    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rows = torch.arange(mask.shape[0])
    rewards[rows, last] += scores * (mask.sum(dim=1) > 0)
    return rewards, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) by generalized advantage estimation over each masked response.

    delta_t = r_t + gamma * V_{t+1} - V_t (V past the last token is 0), and
    A_t = delta_t + gamma * lam * A_{t+1}; returns = A + V.
    """
    import torch

    values = values * mask
    rewards = rewards * mask
    length = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, advantages + values


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clipped surrogate loss, fraction of tokens clipped, approximate KL old -> new)."""
    import torch

    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)
    return loss, clipfrac, approx_kl


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float
) -> torch.Tensor:
    """0.5 * the larger of the plain and the clipped squared error, averaged over `mask`."""
    import torch

    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)
