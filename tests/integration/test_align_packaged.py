"""The three alignment stages from the shipped YAML configs on the packaged SmolLM2-135M, offline.

A few steps each on a slice of the synthetic preference set: the point is that reward, DPO and
PPO run end to end on a real model and write their run folders; the learning itself is tested
on tiny models (tests/unit/finetune/test_align.py) and measured in docs/benchmarks.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfoundry.finetune.config import load_finetune_config
from lmfoundry.finetune.run import run_finetune

CONFIGS = Path(__file__).parents[2] / "configs" / "finetune"
SMALL = [
    "data.limit=8",
    "data.eval_limit=4",
    "data.max_length=320",
    "align.eval_pairs=4",
    "training.eval_every=0",
]


@pytest.mark.integration
def test_reward_dpo_and_ppo_run_on_the_packaged_model(tmp_path: Path) -> None:
    from lmfoundry.finetune.data.synthetic_preferences import make_preferences_synthetic

    make_preferences_synthetic(n=40, seed=0)
    reward = load_finetune_config(
        CONFIGS / "reward.yaml",
        [*SMALL, "training.max_steps=2", "training.batch_size=2", f"output_dir={tmp_path / 'rm'}"],
    )
    summary = run_finetune(reward, progress=False)
    assert summary["steps"] == 2 and summary["heldout_after"]["accuracy"] is not None
    dpo = load_finetune_config(
        CONFIGS / "dpo.yaml", [*SMALL, "training.max_steps=2", f"output_dir={tmp_path / 'dpo'}"]
    )
    summary = run_finetune(dpo, progress=False)
    assert summary["heldout_after"]["implicit_margin"] != 0.0
    ppo = load_finetune_config(
        CONFIGS / "ppo.yaml",
        [
            *SMALL,
            "training.max_steps=1",
            "training.batch_size=2",
            "align.rollout_batch=2",
            "align.max_new_tokens=8",
            f"align.reward_model={tmp_path / 'rm'}",
            f"output_dir={tmp_path / 'ppo'}",
        ],
    )
    summary = run_finetune(ppo, progress=False)
    assert summary["steps"] == 1 and summary["eval_after"]["kl"] >= -1.0
    for run in ("rm", "dpo", "ppo"):
        assert (tmp_path / run / "curves.png").is_file()
        assert json.loads((tmp_path / run / "summary.json").read_text())["stage"] in ("reward", "dpo", "ppo")
