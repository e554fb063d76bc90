"""The chunked hidden-state loss equals transformers' own loss (value and gradient)."""

from __future__ import annotations

import pytest


def _batch():
    import torch

    torch.manual_seed(0)
    ids = torch.randint(5, 380, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0  # right padding
    labels = ids.clone()
    labels[:, :8] = -100  # masked prompt
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_loss_matches_transformers(chunk: int) -> None:
    import torch

    from lmfoundry.finetune.train.loss import chunked_loss
    from tiny import build_model

    batch = _batch()
    model = build_model("llama", vocab_size=384)
    reference = model(**batch).loss
    reference.backward()
    expected_grad = model.model.layers[0].mlp.up_proj.weight.grad.clone()
    head_grad = model.lm_head.weight.grad.clone()
    model.zero_grad()

    loss, n = chunked_loss(model, batch, chunk)
    loss.backward()
    assert n == int((batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(loss, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        model.model.layers[0].mlp.up_proj.weight.grad, expected_grad, atol=1e-6, rtol=1e-4
    )
    torch.testing.assert_close(model.lm_head.weight.grad, head_grad, atol=1e-6, rtol=1e-4)
    assert isinstance(model.lm_head, torch.nn.Linear)  # the head is put back


def test_chunked_loss_matches_peft_with_virtual_tokens() -> None:
    """Prompt tuning prepends virtual tokens; peft pads the labels, we drop those positions."""
    import torch
    from peft import PromptTuningConfig, get_peft_model

    from lmfoundry.finetune.train.loss import chunked_loss
    from tiny import build_model

    torch.manual_seed(1)
    model = get_peft_model(
        build_model("llama", vocab_size=384), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    )
    batch = _batch()
    with torch.no_grad():
        reference = model(**batch).loss
        loss, _ = chunked_loss(model, batch, 5)
    torch.testing.assert_close(loss, reference, atol=1e-5, rtol=1e-5)


def test_all_masked_batch_gives_zero_loss() -> None:
    import torch

    from lmfoundry.finetune.train.loss import chunked_loss
    from tiny import build_model

    batch = _batch()
    batch["labels"] = torch.full_like(batch["labels"], -100)
    loss, n = chunked_loss(build_model("llama", vocab_size=384), batch)
    assert n == 0 and float(loss) == 0.0
