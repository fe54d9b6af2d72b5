"""Accuracy against cost for trained runs: PLA Fig. 4 (Mul-Adds) and Fig. 5 (inference memory)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from progreid.profiling.profiler import MIB, profile_spec
from progreid.profiling.spec import spec_from_path


@dataclass(frozen=True)
class EfficiencyPoint:
    """One run: its label, mAP (percent, from ``results.json``), Mul-Adds per image and peak
    inference memory (bytes) at ``batch_size``."""

    label: str
    mAP: float
    mul_adds: int
    memory: int
    batch_size: int


def efficiency_point(run_dir: str | Path, batch_size: int = 1,
                     device: str = "cpu") -> EfficiencyPoint:
    """Profile the network of ``run_dir`` at its configured input size and read its mAP."""
    run_dir = Path(run_dir)
    results = run_dir / "results.json"
    if not results.is_file():
        raise FileNotFoundError(f"{results}: no results.json; is {run_dir} a finished run?")
    metrics = json.loads(results.read_text())
    if "mAP" not in metrics:
        raise ValueError(f"{results}: no 'mAP' entry; keys are {', '.join(sorted(metrics))}")
    spec, cfg = spec_from_path(run_dir)
    profile = profile_spec(spec, cfg.data.height, cfg.data.width, [batch_size], device,
                           speed=False)
    return EfficiencyPoint(spec.label, float(metrics["mAP"]), profile.counts.mul_adds,
                           profile.memory[batch_size], batch_size)


def plot_efficiency(points: Sequence[EfficiencyPoint], out: str | Path) -> Path:
    """Two panels side by side, mAP against Mul-Adds (PLA Fig. 4) and against peak inference
    memory (PLA Fig. 5), one labelled marker per run; written as a PNG."""
    from progreid.report.plots import new_figure, save_figure

    if not points:
        raise ValueError("plot_efficiency needs at least one run")
    figure = new_figure(1, 2, 10.0, 4.0)
    memory_label = f"peak inference memory (MiB, batch {points[0].batch_size})"
    axes_data = ((figure.axes[0], [p.mul_adds / 1e9 for p in points], "Mul-Adds per image (G)"),
                 (figure.axes[1], [p.memory / MIB for p in points], memory_label))
    for ax, xs, xlabel in axes_data:
        for point, x in zip(points, xs, strict=True):
            ax.scatter([x], [point.mAP], s=40)
            ax.annotate(point.label, (x, point.mAP), xytext=(4, 4), textcoords="offset points",
                        fontsize=8)
        ax.set(xlabel=xlabel, ylabel="mAP (%)")
    figure.axes[0].set_title("accuracy vs computation (PLA Fig. 4)")
    figure.axes[1].set_title("accuracy vs inference memory (PLA Fig. 5)")
    return save_figure(figure, out)
