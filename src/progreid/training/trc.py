"""Progressive hard-sample mining (TRC Sec. IV): a vanilla phase, then a full phase.

Phase 1 ("vanilla") optimises the top-rank counter (TRC Eq. 5-6) only on the pairs that break
the top-rank constraint (d_ap >= min_n d_an); phase 2 ("full") on all anchor/positive pairs.
Each phase runs ``trc.vanilla_epochs`` / ``trc.full_epochs`` epochs and restarts the configured
learning-rate scheme (TRC Sec. V-B: 1.5e-4, 1.5e-5, 1.5e-6 in steps of 500 epochs "in both of
Phase 1 and Phase 2"): each phase is a :class:`Stage` whose schedule starts at its first epoch.
The Adam moments carry over from phase 1 into phase 2 (the paper continues training; it does
not say it resets the optimiser).

Every epoch logs an ``epoch`` record (with ``phase`` and ``phase_epoch``) and a
``trc_histogram`` record: the counts of the S values (TRC Eq. 4) of every anchor/positive pair of
every batch of the epoch, in ``trc.histogram_bins`` equal bins over [0, 1] -- the loss-value
distribution of TRC Fig. 3 -- with how many pairs sit on the logistic's flat ends (saturated)
and how many anchors the phase's loss gives a gradient, so a feature scale on which k means what
the paper meant can be told apart from one on which it does not. The S values come from the
batch's metric features as the trainer computed them (no second forward pass), with the loss's
own parameters; with several metric features (MGN) the histogram pools all of them. It is the
plan's one hook, :class:`SHistogram`.

``train.epochs`` is refused: the budget is ``trc.vanilla_epochs + trc.full_epochs``. The
checkpoint's ``extra`` holds ``{"phase", "phase_epoch"}`` so ``--resume`` continues in the right
phase with the right phase-local learning rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from progreid.config import Config
from progreid.losses import PHASES, TopRankCounter
from progreid.losses.top_rank_counter import CounterStats, top_rank_counter_stats
from progreid.models import ModelOutput
from progreid.training.objective import Objective
from progreid.training.trainer import EpochStats, Hook, Plan, Stage, Trainer
from progreid.utils.checkpoint import CheckpointError
from progreid.utils.metrics_log import MetricsLog


class SHistogram(Hook):
    """The epoch's S values (TRC Eq. 4) in equal bins over [0, 1], logged as its ``trc_histogram``
    record, computed with the stage's TRC term (its k, phase, features and scale; ``term`` until
    the first stage starts). ``violations`` counts the pairs with S >= 0.5, i.e.
    d_ap >= min_n d_an: the ideal top-rank counter H of TRC Eq. 3."""

    def __init__(self, bins: int, term: TopRankCounter | None = None,
                 log: MetricsLog | None = None) -> None:
        self.bins, self.term, self.log = bins, term or TopRankCounter(), log
        self.stats: list[CounterStats] = []
        self.norms: list[Tensor] = []

    def before_epoch(self, trainer: Trainer, stage: Stage) -> None:
        self.term = stage.objective.metric
        self.stats, self.norms = [], []

    def after_step(self, trainer: Trainer, output: ModelOutput, labels: Tensor) -> None:
        for features in output.metric_features:
            features = features.detach().float()
            self.stats.append(top_rank_counter_stats(features, labels, **asdict(self.term)))
            self.norms.append(features.norm(dim=1))

    def after_epoch(self, trainer: Trainer, stage: Stage, stats: EpochStats) -> None:
        self.log.write("trc_histogram", epoch=stats.epoch, **stage.fields(stats.epoch),
                       **self.record())

    def record(self) -> dict[str, Any]:
        """JSON fields: bin ``edges`` (bins + 1), ``counts`` per bin, ``pairs``, ``violations``
        (pairs with S >= 0.5), ``saturated`` (pairs with |k Delta| >= 5: no gradient to speak
        of), ``anchors`` (anchors with a pair) and ``active_anchors`` (those the phase gives a
        gradient through an unsaturated pair), ``feature_norm`` (mean L2 norm of the metric
        features before the term's normalisation) and the term's ``k``, ``features``, ``scale``."""
        values = torch.cat([s.values for s in self.stats]) if self.stats else torch.empty(0)
        counts = [round(c) for c in torch.histc(values, self.bins, 0.0, 1.0).tolist()]
        edges = torch.linspace(0.0, 1.0, self.bins + 1, dtype=torch.float64).tolist()
        norm = torch.cat(self.norms).mean().item() if self.norms else None
        return {"edges": edges, "counts": counts, "pairs": sum(counts),
                "violations": int((values >= 0.5).sum()),
                "saturated": sum(int(s.saturated.sum()) for s in self.stats),
                "anchors": sum(s.active.numel() for s in self.stats),
                "active_anchors": sum(int(s.active.sum()) for s in self.stats),
                "feature_norm": norm, "k": self.term.k, "features": self.term.features,
                "scale": self.term.scale}


@dataclass(frozen=True)
class PhaseProgress:
    """Where a TRC run stands: the current phase and the epochs completed in it."""

    phase: str = PHASES[0]
    phase_epoch: int = 0

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> PhaseProgress:
        """Read the checkpoint's ``extra`` (empty on a fresh start)."""
        if not extra:
            return cls()
        phase, phase_epoch = extra.get("phase"), extra.get("phase_epoch")
        if phase not in PHASES or not isinstance(phase_epoch, int) or phase_epoch < 0:
            raise CheckpointError(f"checkpoint progress {extra!r} is not a TRC progress record; "
                                  f"expected phase in {PHASES} and phase_epoch >= 0 (was this "
                                  "run trained with train.method = 'trc'?)")
        return cls(phase, phase_epoch)


class TRCPlan(Plan):
    """TRC Sec. IV: the vanilla phase, then the full phase, resuming from ``progress``."""

    def __init__(self, cfg: Config, objective: Objective, log: MetricsLog,
                 progress: dict[str, Any]) -> None:
        self.objectives = {phase: objective.with_metric(phase=phase) for phase in PHASES}
        # TRC Sec. IV order; a budget of 0 + 0 epochs is refused when the config is loaded.
        self.budgets = list(zip(PHASES, (cfg.trc.vanilla_epochs, cfg.trc.full_epochs), strict=True))
        self.start = PhaseProgress.from_extra(progress)
        self.histogram = SHistogram(cfg.trc.histogram_bins, objective.metric, log)
        self.stage: Stage | None = None

    def stages(self, trainer: Trainer) -> Iterator[Stage]:
        """One stage a phase; its records and the checkpoint name ``phase`` and ``phase_epoch``
        (the epochs completed in the phase)."""
        for phase, budget in self.budgets[PHASES.index(self.start.phase):]:
            first = trainer.epoch - (self.start.phase_epoch if phase == self.start.phase else 0)
            self.stage = Stage(self.objectives[phase], first + budget, first,
                               fields=lambda epoch, phase=phase, first=first: {
                                   "phase": phase, "phase_epoch": epoch - first})
            yield self.stage

    def progress(self, trainer: Trainer) -> dict[str, Any]:
        return self.stage.fields(trainer.epoch)

    def hooks(self) -> list[Hook]:
        return [self.histogram]
