"""Every method trains on a tiny Llama (eval loss goes down) and its saved adapter reloads exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lmfoundry.finetune.config import METHODS, finetune_config_from_dict

# Prompt-style methods train few parameters from a neutral start: give them a larger step.
LR = {"ia3": 5e-2, "prompt": 5e-2, "prefix": 3e-2, "adaption_prompt": 5e-2}


def _logits(model: Any, ids: Any) -> Any:
    import torch

    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


@pytest.mark.parametrize("method", METHODS)
def test_method_lowers_loss_and_adapter_reloads(
    method: str, ft_config: Callable[..., dict[str, Any]]
) -> None:
    import torch

    from lmfoundry.finetune.train.artifacts import load_base, load_tuned
    from lmfoundry.finetune.train.sft import finetune

    config = finetune_config_from_dict(ft_config(method, training={"lr": LR.get(method, 1e-2)}))
    result = finetune(config, progress=False)
    summary = result.summary
    assert summary["initial_eval_loss"] is not None
    assert summary["eval_loss"] < summary["initial_eval_loss"] - 1e-3, summary

    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 60, 61]])
    reloaded, _, info = load_tuned(summary["adapter_path"])
    assert info.method == method
    expected = _logits(result.model, ids)
    torch.testing.assert_close(_logits(reloaded, ids), expected, atol=1e-5, rtol=1e-5)
    if method != "full":  # the adapter changes the base model's output (not an identity init)
        base, _ = load_base(info)
        tuned = expected[:, -ids.shape[1] :]  # soft-prompt methods prepend virtual-token positions
        assert (_logits(base, ids) - tuned).abs().max() > 1e-4


def test_bf16_autocast_trains_and_keeps_fp32_adapter_weights(
    ft_config: Callable[..., dict[str, Any]],
) -> None:
    import torch

    from lmfoundry.finetune.train.sft import finetune

    config = finetune_config_from_dict(ft_config(training={"precision": "bf16"}))
    result = finetune(config, progress=False)
    assert result.summary["eval_loss"] < result.summary["initial_eval_loss"] - 1e-3
    trained = [p for p in result.model.parameters() if p.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)


def test_activation_checkpointing_gives_the_same_training(
    ft_config: Callable[..., dict[str, Any]], tmp_path: Any
) -> None:
    """Recomputing activations in backward changes memory, not the maths (no dropout here)."""
    from lmfoundry.finetune.run import run_finetune

    losses = []
    for flag in (False, True):
        options = {"method": {"name": "lora", "options": {"lora_dropout": 0.0}}}
        training = {"max_steps": 3, "activation_checkpointing": flag, "eval_every": 0}
        config = ft_config(**options, training=training, output_dir=str(tmp_path / f"ac-{flag}"))
        losses.append(run_finetune(finetune_config_from_dict(config), progress=False)["final_step_loss"])
    assert abs(losses[0] - losses[1]) < 1e-4
