"""Process-group set-up for `torchrun` (one process per GPU, or gloo on CPU)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from progreid.config import Config


@contextmanager
def distributed_context(cfg: Config) -> Iterator[tuple[int, int]]:
    """Yield (rank, world_size); under torchrun, initialise and finally destroy the group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield 0, 1
        return
    use_cuda = cfg.train.device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()
