"""Data-parallel training through `accelerate.Accelerator`, for runs started by a launcher.

`accelerate launch` (or `torchrun`) starts one process per device and sets WORLD_SIZE / RANK.
Each process then builds the same model and `Ranks.prepare` wraps it with what the launcher's
accelerate config asks for (DDP by default; FSDP or DeepSpeed from its config file). The loop
stays ours: micro-batch k of process r is global micro-batch k * world + r, so the processes
together see exactly the batches one process would see with `world` times the batch size, and
gradients are averaged across processes by the wrapper. Only the main process writes files.

A single process (`world == 1`, the default everywhere) has no accelerator at all: no wrapper,
no collective calls, the same code path the rest of the project tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.finetune.config import ACCELERATE_MODES


def launched_world_size() -> int:
    """Processes started by the launcher (1 when run directly)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass
class Ranks:
    """This process's place in the run; `accelerator` is None for a plain single process."""

    accelerator: Any = None

    @property
    def rank(self) -> int:
        return int(self.accelerator.process_index) if self.accelerator is not None else 0

    @property
    def world(self) -> int:
        return int(self.accelerator.num_processes) if self.accelerator is not None else 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def prepare(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        """(model to run forward/backward on, optimizer), wrapped for the launcher's strategy."""
        if self.accelerator is None:
            return model, optimizer
        model, optimizer = self.accelerator.prepare(model, optimizer)
        return model, optimizer

    def backward(self, loss: Any) -> None:
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def clip_grad_norm(self, parameters: list[Any], max_norm: float) -> None:
        import torch

        if self.accelerator is None:
            torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        else:  # FSDP / DeepSpeed need the norm over all shards
            self.accelerator.clip_grad_norm_(parameters, max_norm)

    def total(self, value: float) -> float:
        """`value` summed over all processes."""
        if self.accelerator is None:
            return value
        import torch

        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self.accelerator.device)
        return float(self.accelerator.reduce(tensor, reduction="sum").item())

    def mean(self, value: float) -> float:
        return self.total(value) / self.world

    def wait(self) -> None:
        """Barrier: every process reaches this point before any goes on."""
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()


def make_ranks(mode: str = "auto") -> Ranks:
    """Ranks for `training.accelerate`: auto = accelerate when a launcher started > 1 process.

    "on" also uses accelerate in a single process (its device placement and mixed precision
    from `accelerate config`); "off" never does, even under a launcher (each process would then
    train its own copy, which is only useful for debugging).
    """
    if mode not in ACCELERATE_MODES:
        raise InvalidInputError(
            f"training.accelerate must be one of {', '.join(ACCELERATE_MODES)}, got {mode!r}"
        )
    if mode == "off" or (mode == "auto" and launched_world_size() == 1):
        return Ranks()
    import torch
    from accelerate import Accelerator

    # without cpu=True accelerate sees no process group on a machine without GPUs
    return Ranks(Accelerator(cpu=not torch.cuda.is_available()))
