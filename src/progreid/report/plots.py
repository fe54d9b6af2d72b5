"""Training plots of a run folder, drawn from its ``metrics.jsonl`` (matplotlib, Agg, PNG).

- ``losses``: the epoch means of ``loss``, ``ce`` and ``metric`` (one panel each).
- ``accuracy``: training accuracy of the first classifier and the evaluations' rank-1 and mAP.
- ``trc_histograms``: the S-value distribution (TRC Eq. 4) at a few epochs of each phase of
  progressive hard-sample mining, as in TRC Fig. 3 (from the ``trc_histogram`` records).
- ``pla_trace``: PLA's Bayesian-optimisation trace (from the ``pla_round`` records): f(w) (PLA
  Eq. 9) of every candidate per round, and the chosen w' = (lambda, m, k, p) per round.

A figure is drawn only when the log holds its records. Phase changes (TRC) are marked on the
curves. Each builder returns a matplotlib ``Figure`` (or None), so an HTML report can embed it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from progreid.errors import MissingDependencyError
from progreid.utils.io import atomic_path
from progreid.utils.metrics_log import events, read_records

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Record = dict[str, Any]
LOSS_TERMS = ("loss", "ce", "metric")
PLA_PARAMETERS = ("lambda", "margin", "k", "p")


def new_figure(rows: int, cols: int, width: float, height: float) -> Figure:
    """An Agg-backed figure with ``rows x cols`` gridded axes (no pyplot global state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "plotting needs matplotlib, the 'plot' extra: pip install 'progreid[plot]'") from exc
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    for ax in figure.subplots(rows, cols, squeeze=False).flat:
        ax.grid(alpha=0.3)
    return figure


def mark_phases(ax: Axes, epochs: list[Record]) -> None:
    """Dashed lines where the ``phase`` of consecutive epoch records changes, labelled with it."""
    for before, after in zip(epochs, epochs[1:], strict=False):
        if after.get("phase") != before.get("phase"):
            x = before["epoch"] + 0.5
            ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(str(after.get("phase")), (x, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -12), textcoords="offset points", fontsize=8, color="grey")


def loss_figure(records: list[Record]) -> Figure | None:
    """Mean loss terms per epoch, one panel per term present."""
    epochs = events(records, "epoch")
    terms = [t for t in LOSS_TERMS if any(t in r for r in epochs)]
    if not terms:
        return None
    figure = new_figure(1, len(terms), 4.0 * len(terms), 3.2)
    for ax, term in zip(figure.axes, terms, strict=True):
        points = [(r["epoch"], r[term]) for r in epochs if term in r]
        ax.plot(*zip(*points, strict=True), marker="." if len(points) < 50 else None)
        ax.set(title=term, xlabel="epoch", ylabel="epoch mean")
        mark_phases(ax, epochs)
    return figure


def accuracy_figure(records: list[Record]) -> Figure | None:
    """Training accuracy (percent) per epoch and the rank-1 / mAP of every evaluation."""
    epochs = events(records, "epoch")
    evals = events(records, "eval")
    series = {"training accuracy": [(r["epoch"], 100.0 * r["acc"]) for r in epochs if "acc" in r]}
    for key, label in (("rank1", "eval rank-1"), ("mAP", "eval mAP")):
        series[label] = [(r["epoch"], r[key]) for r in evals if key in r]
    series = {label: points for label, points in series.items() if points}
    if not series:
        return None
    figure = new_figure(1, 1, 6.0, 3.6)
    ax = figure.axes[0]
    for label, points in series.items():
        ax.plot(*zip(*points, strict=True), marker="o" if len(points) < 20 else None,
                label=label)
    ax.set(xlabel="epoch", ylabel="percent", ylim=(0, 100), xlim=(0, None))
    ax.legend(fontsize=8)
    mark_phases(ax, epochs)
    return figure


def spread(items: list[Any], count: int) -> list[Any]:
    """Up to ``count`` items evenly spread from the first to the last (both included)."""
    if len(items) <= count:
        return list(items)
    if count == 1:
        return [items[-1]]
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def trc_histogram_figure(records: list[Record], per_phase: int = 4) -> Figure | None:
    """TRC Fig. 3: the distribution of S over the anchor/positive pairs at ``per_phase`` epochs
    of each phase, as the fraction of the epoch's pairs per bin."""
    histograms = [r for r in events(records, "trc_histogram") if r.get("pairs")]
    phases = list(dict.fromkeys(r.get("phase") for r in histograms))
    if not phases:
        return None
    figure = new_figure(1, len(phases), 5.0 * len(phases), 3.6)
    for ax, phase in zip(figure.axes, phases, strict=True):
        chosen = spread([r for r in histograms if r.get("phase") == phase], per_phase)
        for record in chosen:
            fractions = [c / record["pairs"] for c in record["counts"]]
            ax.stairs(fractions, record["edges"], linewidth=1.5,
                      label=f"epoch {record['epoch']} (phase epoch {record.get('phase_epoch')})")
        ax.axvline(0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.set(title=f"phase: {phase}", xlabel="S (TRC Eq. 4)",
               ylabel="fraction of anchor/positive pairs", xlim=(0, 1))
        ax.legend(fontsize=8)
    return figure


def pla_trace_figure(records: list[Record]) -> Figure | None:
    """PLA Algorithm 1: f(w) of every candidate per round (lower is better; PLA Eq. 9) and the
    components of the chosen w' per round.

    Reads the ``pla_round`` records of :mod:`progreid.training.pla`: ``round``, ``candidates``
    (each with ``f``, the f(w) of its exploration, None if it diverged) and ``proposal.w``
    (the chosen w' as ``{lambda, margin, k, p}``).
    """
    rounds = sorted(events(records, "pla_round"), key=lambda r: r["round"])
    if not rounds:
        return None
    figure = new_figure(1 + len(PLA_PARAMETERS), 1, 6.0, 2.0 * (1 + len(PLA_PARAMETERS)))
    top, *params = figure.axes
    best = []
    for record in rounds:
        values = [c["f"] for c in record.get("candidates", []) if c.get("f") is not None]
        top.scatter([record["round"]] * len(values), values, s=12, color="tab:blue", alpha=0.6)
        if values:
            best.append((record["round"], min(values)))
    if best:
        top.plot(*zip(*best, strict=True), color="tab:red", label="best f(w) of the round")
        top.legend(fontsize=8)
    top.set(title="PLA Bayesian optimisation", ylabel="f(w) (PLA Eq. 9)")
    for ax, name in zip(params, PLA_PARAMETERS, strict=True):
        points = [(r["round"], r["proposal"]["w"][name]) for r in rounds
                  if name in r.get("proposal", {}).get("w", {})]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", color="tab:green")
        ax.set(ylabel=f"chosen {name}")
    params[-1].set(xlabel="round")
    return figure


FIGURES: dict[str, Callable[[list[Record]], Figure | None]] = {
    "losses": loss_figure,
    "accuracy": accuracy_figure,
    "trc_histograms": trc_histogram_figure,
    "pla_trace": pla_trace_figure,
}


def save_figure(figure: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``figure`` as a PNG atomically."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    return Path(path)


def write_plots(run_dir: str | Path, out_dir: str | Path | None = None,
                histogram_epochs: int = 4) -> list[Path]:
    """Draw every figure the run's log supports into ``out_dir`` (default ``RUN_DIR/plots``) as
    ``<name>.png``; return the paths written."""
    if histogram_epochs < 1:
        raise ValueError(f"histogram_epochs must be >= 1, got {histogram_epochs!r}")
    records = read_records(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "plots"
    builders = {**FIGURES,
                "trc_histograms": partial(trc_histogram_figure, per_phase=histogram_epochs)}
    written = []
    for name, build in builders.items():
        figure = build(records)
        if figure is not None:
            written.append(save_figure(figure, out / f"{name}.png"))
    return written
