"""Resume is exact: 6 steps straight == 3 steps, Ctrl-C, --resume 3 more (losses and weights)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.errors import LmfError
from lmfoundry.finetune.config import finetune_config_from_dict
from support.interrupt import InterruptAt


def _train_losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]


def _weights(adapter: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(Path(adapter) / "adapter_model.safetensors"))


@pytest.mark.parametrize("method", ["lora", "adalora"])
def test_interrupt_and_resume_matches_straight_run(
    method: str, ft_config: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    import torch

    from lmfoundry.finetune.run import run_finetune

    # dropout exercises the saved RNG state; accumulation and a decaying LR the step bookkeeping
    options = {"lora_dropout": 0.2} if method == "lora" else {"lora_dropout": 0.2, "total_step": 6}
    settings = dict(
        method={"name": method, "options": options},
        training={"grad_accumulation": 2, "eval_every": 2, "save_every": 0},
    )
    straight = finetune_config_from_dict(ft_config(**settings, output_dir=str(tmp_path / "straight")))
    split = finetune_config_from_dict(ft_config(**settings, output_dir=str(tmp_path / "split")))
    full = run_finetune(straight, progress=False)

    with pytest.raises(KeyboardInterrupt):
        run_finetune(split, progress=False, callbacks=[InterruptAt(3)])
    state = json.loads((tmp_path / "split" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 3
    resumed = run_finetune(split, resume=True, progress=False)

    assert _train_losses(tmp_path / "split") == _train_losses(tmp_path / "straight")
    assert resumed["final_step_loss"] == full["final_step_loss"]
    assert resumed["eval_loss"] == full["eval_loss"]
    a, b = _weights(full["adapter_path"]), _weights(resumed["adapter_path"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_changed_config_and_missing_checkpoint(
    ft_config: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    from lmfoundry.finetune.run import run_finetune

    config = finetune_config_from_dict(ft_config(training={"max_steps": 1}))
    with pytest.raises(LmfError, match="nothing to resume"):
        run_finetune(config, resume=True, progress=False)
    run_finetune(config, progress=False)
    with pytest.raises(LmfError, match="already holds a run"):
        run_finetune(config, progress=False)
    changed = finetune_config_from_dict(ft_config(training={"max_steps": 1, "lr": 0.5}))
    with pytest.raises(LmfError, match="differs"):
        run_finetune(changed, resume=True, progress=False)


def test_early_stopping_stops_when_eval_loss_stops_improving(
    ft_config: Callable[..., dict[str, Any]],
) -> None:
    from lmfoundry.finetune.run import run_finetune

    # a huge learning rate makes the eval loss blow up, so patience 1 stops after one bad eval
    config = finetune_config_from_dict(
        ft_config(
            training={
                "lr": 5.0,
                "max_steps": 40,
                "eval_every": 1,
                "early_stopping_patience": 1,
                "max_grad_norm": None,
            }
        )
    )
    summary = run_finetune(config, progress=False)
    assert summary["stopped_early"] and summary["steps"] < 40
