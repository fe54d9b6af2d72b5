"""Inference throughput in images per second, after warm-up, from repeated timings."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Throughput:
    """Median seconds per batch over ``repeats`` timed runs and the images per second it gives."""

    batch_size: int
    seconds_per_batch: float
    repeats: int

    @property
    def images_per_second(self) -> float:
        return self.batch_size / self.seconds_per_batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(model: nn.Module, batch_size: int, height: int, width: int,
                       device: torch.device | str = "cpu", warmup: int = 2, repeats: int = 5,
                       channels_last: bool = False) -> Throughput:
    """Time ``repeats`` eval-mode forwards of a random batch after ``warmup`` untimed ones."""
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need batch_size >= 1, repeats >= 1, warmup >= 0; got {batch_size}, "
                         f"{repeats}, {warmup}")
    device = torch.device(device)
    model = model.eval()
    images = torch.randn(batch_size, 3, height, width, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    timings = []
    with torch.inference_mode():
        for step in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            model(images)
            _sync(device)
            if step >= warmup:
                timings.append(time.perf_counter() - start)
    return Throughput(batch_size, statistics.median(timings), repeats)
