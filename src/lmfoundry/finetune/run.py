"""`lmf finetune`'s one dispatcher: the config's `stage:` picks a runner, `run_stage` does the rest.

Every runner keeps the contract of `train/stage.py`; adding a stage is a runner and a line in
`STAGES` (and its name in `finetune.config.STAGES`, which validates configs).
"""

from __future__ import annotations

from typing import Any

from lmfoundry.finetune.align.pairwise import run_dpo, run_reward
from lmfoundry.finetune.align.ppo_loop import run_ppo
from lmfoundry.finetune.config import FinetuneConfig
from lmfoundry.finetune.train.pretrain import run_pretrain
from lmfoundry.finetune.train.sft import run_sft
from lmfoundry.finetune.train.stage import StageRunner, run_stage

STAGES: dict[str, StageRunner] = {
    "sft": run_sft,
    "reward": run_reward,
    "dpo": run_dpo,
    "ppo": run_ppo,
    "pretrain": run_pretrain,
    "continued-pretraining": run_pretrain,
}


def run_finetune(
    config: FinetuneConfig, *, resume: bool = False, progress: bool = True, callbacks: list[Any] | None = None
) -> dict[str, Any]:
    """Train as `config` says and return the summary (also written to summary.json).

    `config.stage` picks supervised fine-tuning, an alignment stage (reward / dpo / ppo) or a
    raw-text stage (pretrain / continued-pretraining).
    KeyboardInterrupt leaves a resumable checkpoint in the run folder and propagates.
    """
    summary, _job = run_stage(
        config, STAGES[config.stage], resume=resume, progress=progress, callbacks=callbacks
    )
    return summary
