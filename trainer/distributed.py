"""Data-parallel training under torchrun: who this process is, and the few collectives the loop needs.

Every rank runs the same loop on its slice of the same global batch; DDP averages the gradients,
so the update equals single-process training on the whole batch. Rank 0 alone writes the run
directory; the others follow its decisions (stop, checkpoint, validation) through one all-reduce
per step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from trainer.errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor


def join_world() -> World:
    """Join the process group that torchrun describes in the environment, if any: gloo for CPU
    tensors, NCCL for CUDA ones."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(world.local_rank)
            dist.init_process_group(backend="cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group(backend="gloo")
    return world


def leave_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def check_batch(batch_size: int, world: World) -> None:
    if batch_size % world.size:
        raise UserError(f"training.batch_size ({batch_size}) must be divisible by the number of processes ({world.size})")
