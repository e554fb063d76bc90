"""Data-parallel training through `accelerate.Accelerator`, for runs started by a launcher.

`accelerate launch` (or `torchrun`) starts one process per device and sets WORLD_SIZE / RANK.
Each process then builds the same model and `Ranks.prepare` wraps it with what the launcher's
accelerate config asks for (DDP by default; FSDP or DeepSpeed from its config file). The loop
stays ours: micro-batch k of process r is global micro-batch k * world + r, so the processes
together see exactly the batches one process would see with `world` times the batch size, and
gradients are averaged across processes by the wrapper. Only the main process writes files.

A single process (`world == 1`, the default everywhere) has no accelerator at all: no wrapper,
no collective calls, the same code path the rest of the project tests.

FSDP2 (`ACCELERATE_USE_FSDP=true`, what `accelerate launch` sets from an FSDP config): on GPUs
accelerate's `prepare` shards the model with torch's `fully_shard`. accelerate does not offer FSDP
to CPU processes (it falls back to DDP), so there `Ranks.prepare` calls `fully_shard` itself, on
every decoder layer and then the root, the layout accelerate's transformer-based wrap policy
gives. Sharded parameters change three things, all handled here or by the callers: every
forward is a collective (so each process runs the same number of evaluation batches,
`Ranks.sharded`), the artifact is saved from `full_state_dict` (gathered from all shards), and
resumable checkpoints are not written (their optimizer state would be one shard's).
"""

from __future__ import annotations

import os
import warnings
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


def fsdp_requested() -> bool:
    """Whether the launcher asked for FSDP (`accelerate launch` with an FSDP config sets this)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").strip().lower() in {"1", "true", "yes"}


@dataclass
class Ranks:
    """This process's place in the run; `accelerator` is None for a plain single process."""

    accelerator: Any = None
    cpu_fsdp: bool = False
    """Shard with torch's FSDP2 ourselves (CPU processes, where accelerate would use DDP)."""

    @property
    def rank(self) -> int:
        return int(self.accelerator.process_index) if self.accelerator is not None else 0

    @property
    def world(self) -> int:
        return int(self.accelerator.num_processes) if self.accelerator is not None else 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """True under FSDP: parameters are split across processes."""
        if self.cpu_fsdp:
            return True
        return self.accelerator is not None and str(self.accelerator.distributed_type) in (
            "FSDP",
            "DistributedType.FSDP",
        )

    def prepare(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        """(model to run forward/backward on, optimizer), wrapped for the launcher's strategy."""
        if self.accelerator is None:
            return model, optimizer
        if self.cpu_fsdp:  # sharded in place by `shard` (before the optimizer was made)
            return model, optimizer
        model, optimizer = self.accelerator.prepare(model, optimizer)
        return model, optimizer

    def shard(self, model: Any) -> None:
        """FSDP2 on CPU processes, in place; call before making the optimizer, since
        `fully_shard` replaces the parameters. A no-op otherwise."""
        if self.cpu_fsdp:
            shard_cpu(model)

    def full_state_dict(self, model: Any) -> dict[str, Any] | None:
        """Under FSDP: the model's whole state dict, gathered on the main process (every process
        must call this: it is a collective). None when parameters are not sharded."""
        if not self.sharded:
            return None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state: dict[str, Any] = get_model_state_dict(model, options=options)
        return state

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
    cpu = not torch.cuda.is_available()
    return Ranks(Accelerator(cpu=cpu), cpu_fsdp=cpu and fsdp_requested() and launched_world_size() > 1)


def shard_cpu(model: Any) -> None:
    """FSDP2 on CPU processes: `fully_shard` each decoder layer, then the whole model (in place)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # our loss swaps the output head for an identity, so the model returns its hidden states, a
    # view; nothing modifies it in place, which is what FSDP2's warning about views is for
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh("cpu", (launched_world_size(),))
    for module in list(model.modules()):
        if type(module).__name__.endswith("DecoderLayer"):
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
