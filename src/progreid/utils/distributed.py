"""Every ``torch.distributed`` helper of progreid: process group, DDP, collectives, sharding.

``torchrun --nproc_per_node=N -m progreid train CONFIG`` starts N processes. Each runs the
forward pass on its own share of every PK batch (the sampler gives rank r the r-th P identities
of each global batch of ``P * N`` identities); the outputs are gathered so that the losses see
the whole global batch (:func:`gather_with_grad`), and DistributedDataParallel averages the
gradients. Training therefore follows a single-process run with ``data.p = P * N`` except for
batch-norm statistics, which cover a process's share unless ``train.sync_bn`` (CUDA) is on.
Feature extraction splits a list the other way: process r embeds items r, r + N, r + 2N, ...
and :func:`gather_strided_rows` puts them back in order on every process. NCCL is used on CUDA,
gloo on CPU. With one process (no ``WORLD_SIZE``) every helper here is a no-op.

Set ``PROGREID_SAMPLE_LOG=DIR`` to make every process append the dataset indices of each of its
batches to ``DIR/rank<r>.jsonl`` (``{"epoch", "step", "indices"}``): a debugging aid that shows
which samples each process saw.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from progreid.errors import ConfigError

SAMPLE_LOG_ENV = "PROGREID_SAMPLE_LOG"
T = TypeVar("T")


@contextmanager
def distributed_context(device: str, sync_bn: bool) -> Iterator[tuple[int, int]]:
    """Yield (rank, world_size); under torchrun, initialise and finally destroy the group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield 0, 1
        return
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if sync_bn and not use_cuda:
        raise ConfigError("train.sync_bn = true needs CUDA (PyTorch's SyncBatchNorm does not "
                          "run on CPU); set train.sync_bn=false for CPU training")
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size()
        dist.barrier()  # no process tears the group down while another still works (writes)
    finally:
        destroy_process_group()


def destroy_process_group() -> None:
    """``dist.destroy_process_group()`` after freeing the unreachable DistributedDataParallel
    objects that reference cycles still hold. A DDP object that outlives the group aborts its
    process at exit now and then ("terminate called without an active exception", SIGABRT: 5
    runs in 50 of a two-rank script that kept one, 0 in 30 that freed it first)."""
    gc.collect()
    dist.destroy_process_group()


def process_group() -> tuple[int, int]:
    """(rank, world size) of the current process group; (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_rank() -> int:
    """The process's index on its machine (``LOCAL_RANK`` set by torchrun; 0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` (which keeps the weights, unwrapped), with
    ``find_unused_parameters``: an objective may leave a head without gradient (PLA exploring
    lambda = 0, or ``loss.ce_weight: 0``), which then gets no update, as in a single process."""
    device_ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """The rows of every process's ``tensor``, concatenated in rank order, on every process.

    Process r's share is slice r, which is exactly the batch one process with ``P * world_size``
    identities draws (see :class:`progreid.data.sampler.PKSampler`), so the losses see the same
    batch as in a single process. Only the process's own slice keeps its autograd graph; the
    others are constants. Back-propagating ``world_size * loss`` (:func:`loss_scale`) then makes
    DDP's mean of the processes' gradients equal the single-process gradient of the global-batch
    loss.
    """
    rank, world = process_group()
    if world == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[rank] = tensor
    return torch.cat(parts)


def loss_scale() -> int:
    """Factor on the global-batch loss before ``backward`` (see :func:`gather_with_grad`)."""
    return process_group()[1]


@contextmanager
def local_main_first() -> Iterator[None]:
    """Run the body on each machine's first process before the others (e.g. to build a cache)."""
    first, distributed = local_rank() == 0, process_group()[1] > 1
    if distributed and not first:
        dist.barrier()
    yield
    if distributed and first:
        dist.barrier()


def main_process_result(compute: Callable[..., T], *args: Any) -> T:
    """``compute(*args)`` on rank 0 only; every process returns rank 0's (picklable) result, so
    a decision taken on rank 0 (PLA's study) is the same on every rank."""
    rank, world = process_group()
    if world == 1:
        return compute(*args)
    box = [compute(*args) if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def share_rank0_buffers(model: nn.Module) -> None:
    """Give every process rank 0's buffers (batch-norm statistics, which each process updated
    from its own share of the last batch), so that all shards use the model rank 0 saves."""
    if process_group()[1] > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def gather_strided_rows(local: torch.Tensor, total: int) -> torch.Tensor:
    """All ``total`` rows on every process, in order, from each process's strided share
    (process r holds rows r, r + W, ...). Shares are padded to one length for ``all_gather``."""
    world = process_group()[1]
    if world == 1:
        return local
    length = -(-total // world)
    padded = local.new_zeros((length, *local.shape[1:]))
    padded[:local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.stack(parts, 1).reshape(length * world, *local.shape[1:])[:total]


class SampleLog:
    """Appends each batch's dataset indices to ``$PROGREID_SAMPLE_LOG/rank<r>.jsonl`` when that
    variable is set (see the module docstring); otherwise does nothing."""

    def __init__(self, rank: int) -> None:
        folder = os.environ.get(SAMPLE_LOG_ENV)
        self.path = Path(folder) / f"rank{rank}.jsonl" if folder else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, epoch: int, step: int, indices: torch.Tensor) -> None:
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"epoch": epoch, "step": step,
                                     "indices": indices.tolist()}) + "\n")
