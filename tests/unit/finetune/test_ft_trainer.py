"""Data order, schedule and step counting of the training loop."""

from __future__ import annotations

import math

import pytest

from lmfoundry.finetune.config import TrainingConfig
from lmfoundry.finetune.train.loop import lr_factor, micro_batch, total_steps


def test_micro_batches_cover_each_epoch_once_and_repeat_for_a_seed() -> None:
    examples = [{"input_ids": [i]} for i in range(10)]
    epoch0 = [e["input_ids"][0] for k in range(4) for e in micro_batch(examples, k, 3, seed=7)]
    epoch1 = [e["input_ids"][0] for k in range(4, 8) for e in micro_batch(examples, k, 3, seed=7)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(10))
    assert epoch0 != epoch1  # reshuffled per epoch
    assert micro_batch(examples, 5, 3, seed=7) == micro_batch(examples, 5, 3, seed=7)
    assert micro_batch(examples, 0, 3, seed=7) != micro_batch(examples, 0, 3, seed=8)


def test_total_steps_from_epochs_and_accumulation() -> None:
    assert total_steps(10, TrainingConfig(batch_size=3, epochs=2, grad_accumulation=2)) == math.ceil(
        2 * 4 / 2
    )
    assert total_steps(10, TrainingConfig(batch_size=3, max_steps=11)) == 11


@pytest.mark.parametrize("scheduler", ["linear", "cosine", "constant"])
def test_lr_schedule_warms_up_then_decays(scheduler: str) -> None:
    config = TrainingConfig(warmup_steps=4, scheduler=scheduler)
    warm = [lr_factor(s, config, 20) for s in range(4)]
    assert warm == sorted(warm) and warm[-1] < 1.0
    assert lr_factor(4, config, 20) == pytest.approx(1.0)
    end = lr_factor(19, config, 20)
    assert end == pytest.approx(1.0) if scheduler == "constant" else end < 0.1
