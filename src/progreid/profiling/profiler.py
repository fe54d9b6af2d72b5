"""Profile networks and print the comparison table of PLA Sec. 4.5."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from progreid.profiling.counts import Counts, count_inference
from progreid.profiling.memory import peak_memory_cpu, peak_memory_cuda
from progreid.profiling.spec import ModelSpec
from progreid.profiling.throughput import Throughput, measure_throughput

MIB = 2**20


@dataclass
class Profile:
    """One network at one input size: counts, peak memory (bytes) and throughput per batch."""

    label: str
    height: int
    width: int
    device: str
    counts: Counts
    memory: dict[int, int]
    throughput: dict[int, Throughput]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "height": self.height, "width": self.width,
                "device": self.device, **asdict(self.counts),
                "memory_bytes": {str(b): m for b, m in self.memory.items()},
                "images_per_second": {str(b): t.images_per_second
                                      for b, t in self.throughput.items()}}


def profile_spec(spec: ModelSpec, height: int, width: int, batch_sizes: Sequence[int] = (1, 8, 32),
                 device: torch.device | str = "cpu", warmup: int = 2, repeats: int = 5,
                 memory: bool = True, speed: bool = True) -> Profile:
    """Count, measure peak memory (per batch size) and time (per batch size) one network."""
    device = torch.device(device)
    model = spec.build().eval()
    counts = count_inference(model, height, width)
    model = model.to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    peaks: dict[int, int] = {}
    speeds: dict[int, Throughput] = {}
    for batch in batch_sizes:
        if memory:
            peaks[batch] = (peak_memory_cuda(model, batch, height, width, device)
                            if device.type == "cuda"
                            else peak_memory_cpu(spec, batch, height, width))
        if speed:
            speeds[batch] = measure_throughput(model, batch, height, width, device, warmup,
                                               repeats, channels_last)
    return Profile(spec.label, height, width, str(device), counts, peaks, speeds)


def format_table(profiles: Sequence[Profile]) -> str:
    """A plain-text table: parameters (M), Mul-Adds (G) per image, peak memory (MiB) and
    images per second for each measured batch size."""
    memory = sorted({b for p in profiles for b in p.memory})
    speed = sorted({b for p in profiles for b in p.throughput})
    header = ["model", "input", "params M", "infer M", "Mul-Add G"]
    rows = [header + [f"mem@{b} MiB" for b in memory] + [f"img/s@{b}" for b in speed]]
    for p in profiles:
        row = [p.label, f"{p.height}x{p.width}", f"{p.counts.parameters / 1e6:.2f}",
               f"{p.counts.inference_parameters / 1e6:.2f}", f"{p.counts.mul_adds / 1e9:.3f}"]
        row += [_cell(p.memory.get(b), lambda v: f"{v / MIB:.0f}") for b in memory]
        row += [_cell(p.throughput.get(b), lambda t: f"{t.images_per_second:.1f}")
                for b in speed]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _cell(value: Any, fmt) -> str:
    return "-" if value is None else fmt(value)
