"""Single-process or DDP (``torchrun``) execution: device choice, process group, reductions.

``torchrun --nproc_per_node=K -m molequi.cli train config.yaml`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``MASTER_ADDR/PORT``; :func:`setup` then joins the process group (NCCL on
CUDA, gloo on CPU). Without those variables everything runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..devices import resolve_device


@dataclass
class Distributed:
    """Where this process stands.

    Attributes:
        rank: global rank (0 writes all files).
        world_size: number of processes.
        local_rank: rank on this node (picks the GPU).
        device: the device of this process.
        owns_group: whether :func:`setup` created the process group (and :meth:`close` ends it).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over all processes (a new tensor on ``tensor``'s device)."""
        if not self.enabled:
            return tensor
        total = tensor.to(self.device, copy=True)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.to(tensor.device)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object) on every process."""
        if not self.enabled:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def barrier(self) -> None:
        """Wait for all processes."""
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """End the process group if :func:`setup` started it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def launcher_rank() -> int:
    """This process's global rank as the launcher (``torchrun``) set it in ``RANK``; 0 without one."""
    return int(os.environ.get("RANK", "0"))


def setup(device: str) -> Distributed:
    """Read the ``torchrun`` environment, join the process group if there are several processes, pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = launcher_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    owns_group = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
        owns_group = True
    return Distributed(rank, world_size, local_rank, resolved, owns_group)
