"""PK identity sampler: batches of P identities x K images (Hermans et al.; PLA Sec. 4.2).

Each epoch walks through a seeded permutation of the identities in chunks of
``p * world_size`` (a new permutation starts when fewer identities than that are left), so every
identity appears about once per epoch by default. For each identity of a chunk, K images are
drawn without replacement when it has at least K, with replacement otherwise; with
``replacement=False`` identities with fewer than K images are left out instead. The random draws
do not depend on ``rank`` or ``world_size`` beyond the chunk size: process ``rank`` takes the
``rank``-th P identities of each global chunk, so the processes' shares are disjoint and their
union is exactly what one process with ``p * world_size`` draws.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from progreid.data.sample import DatasetError


class PKSampler(Sampler[list[int]]):
    """Yields lists of P*K dataset indices (identity-major, K consecutive per identity).

    ``pids[i]`` is the identity of dataset item ``i``. ``num_batches`` defaults to
    ``len(identities) // (p * world_size)`` (at least 1). Call :meth:`set_epoch` before each epoch;
    iterating twice in the same epoch repeats the same batches.
    """

    def __init__(self, pids: Sequence[int], p: int, k: int, num_batches: int | None = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1,
                 replacement: bool = True) -> None:
        if p < 1 or k < 1:
            raise ValueError(f"PKSampler needs p >= 1 and k >= 1, got p={p}, k={k}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"PKSampler rank {rank} is outside 0..{world_size - 1} "
                             f"(world_size={world_size})")
        if seed < 0:
            raise ValueError(f"PKSampler seed must be >= 0, got {seed}")
        if num_batches is not None and num_batches < 1:
            raise ValueError(f"PKSampler num_batches must be >= 1, got {num_batches}")
        by_pid: dict[int, list[int]] = {}
        for index, pid in enumerate(pids):
            by_pid.setdefault(int(pid), []).append(index)
        self.groups = [np.array(by_pid[pid], dtype=np.int64) for pid in sorted(by_pid)
                       if replacement or len(by_pid[pid]) >= k]
        if not self.groups and by_pid:
            most = max(len(indices) for indices in by_pid.values())
            raise DatasetError(f"data.k = {k} but no training identity has more than {most} "
                               "images, and data.replacement is false (sampling without "
                               "replacement); lower data.k or set data.replacement: true")
        self.global_p = p * world_size
        if self.global_p > len(self.groups):
            raise DatasetError(
                f"PK sampling needs p * world_size = {p} * {world_size} = {self.global_p} "
                f"distinct identities per batch but the training split has only "
                f"{len(self.groups)}"
                + ("" if replacement else f" with at least data.k = {k} images")
                + "; lower data.p")
        self.p, self.k, self.seed, self.rank, self.world_size = p, k, seed, rank, world_size
        self.num_batches = (num_batches if num_batches is not None
                            else max(1, len(self.groups) // self.global_p))
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Select the batches of ``epoch``; they depend only on (seed, epoch)."""
        self.epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.seed = int(state["epoch"]), int(state["seed"])

    def _identity_chunks(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """Chunks of ``global_p`` distinct identities, walking through fresh permutations."""
        while True:
            order = rng.permutation(len(self.groups))
            for start in range(0, len(order) - self.global_p + 1, self.global_p):
                yield order[start:start + self.global_p]

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        for chunk in islice(self._identity_chunks(rng), self.num_batches):
            draws = [rng.choice(self.groups[g], self.k, replace=len(self.groups[g]) < self.k)
                     for g in chunk]
            mine = draws[self.rank * self.p:(self.rank + 1) * self.p]
            yield np.concatenate(mine).tolist()
