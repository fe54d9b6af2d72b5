"""Splitting work over the processes of a ``torchrun`` job and gathering the result.

Used by feature extraction: process r embeds items r, r + W, r + 2W, ... of a list (W processes),
and every process then holds all the features in the list's order. With one process (no process
group) nothing is split.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def process_group() -> tuple[int, int]:
    """(rank, world size) of the current process group; (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def share_rank0_buffers(model: nn.Module) -> None:
    """Give every process rank 0's buffers (batch-norm statistics, which each process updated
    from its own share of the last batch), so that all shards use the model rank 0 saves."""
    if process_group()[1] > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def gather_strided_rows(local: torch.Tensor, total: int) -> torch.Tensor:
    """All ``total`` rows on every process, in order, from each process's strided share
    (process r holds rows r, r + W, ...). Shares are padded to one length for ``all_gather``."""
    rank, world = process_group()
    if world == 1:
        return local
    length = -(-total // world)
    padded = local.new_zeros((length, *local.shape[1:]))
    padded[:local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.stack(parts, 1).reshape(length * world, *local.shape[1:])[:total]
