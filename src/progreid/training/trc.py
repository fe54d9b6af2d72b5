"""Progressive hard-sample mining (TRC Sec. IV): a vanilla phase, then a full phase.

Phase 1 ("vanilla") optimises the top-rank counter (TRC Eq. 5-6) only on the pairs that break
the top-rank constraint (d_ap >= min_n d_an); phase 2 ("full") on all anchor/positive pairs.
Each phase runs ``trc.vanilla_epochs`` / ``trc.full_epochs`` epochs and restarts the configured
learning-rate scheme (TRC Sec. V-B: 1.5e-4, 1.5e-5, 1.5e-6 in steps of 500 epochs "in both of
Phase 1 and Phase 2"): the schedule is a function of the phase-local epoch, through
``Trainer.schedule_start``. The Adam moments carry over from phase 1 into phase 2 (the paper
continues training; it does not say it resets the optimiser).

Every epoch logs an ``epoch`` record (with ``phase`` and ``phase_epoch``) and a
``trc_histogram`` record: the counts of the S values (TRC Eq. 4) of every anchor/positive pair of
every batch of the epoch, in ``trc.histogram_bins`` equal bins over [0, 1] -- the loss-value
distribution of TRC Fig. 3. The S values come from the batch's metric features as the trainer
computed them (no second forward pass), before the optimiser step; with several metric features
(MGN) the histogram pools all of them.

``train.epochs`` is not used: the budget is ``trc.vanilla_epochs + trc.full_epochs``. The
checkpoint's ``extra`` holds ``{"phase", "phase_epoch"}`` so ``--resume`` continues in the right
phase with the right phase-local learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from progreid.config import ConfigError, TRCConfig
from progreid.losses import PHASES, top_rank_counter_values
from progreid.models import ModelOutput
from progreid.training.metrics_log import MetricsLog
from progreid.training.objective import Objective
from progreid.training.run import evaluate_trainer, log_epoch
from progreid.training.trainer import Trainer
from progreid.utils.checkpoint import CheckpointError

METRIC = "top_rank_counter"


@dataclass
class SHistogram:
    """Accumulates the S values (TRC Eq. 4) of an epoch's batches into equal bins over [0, 1].

    Use it as the trainer's ``on_batch`` callback. ``k`` is the loss's k (None: the loss's
    default). ``violations`` counts the pairs with S >= 0.5, i.e. d_ap >= min_n d_an: the ideal
    top-rank counter H of TRC Eq. 3.
    """

    bins: int
    k: float | None = None
    counts: Tensor | None = field(default=None, init=False)
    violations: Tensor | None = field(default=None, init=False)

    def __call__(self, output: ModelOutput, labels: Tensor) -> None:
        params = {} if self.k is None else {"k": self.k}
        for features in output.metric_features:
            values = top_rank_counter_values(features.detach().float(), labels, **params)
            counts = torch.histc(values, bins=self.bins, min=0.0, max=1.0)
            violations = (values >= 0.5).sum()
            if self.counts is None or self.violations is None:
                self.counts, self.violations = counts, violations
            else:
                self.counts += counts
                self.violations += violations

    def record(self) -> dict[str, Any]:
        """JSON fields: bin ``edges`` (bins + 1), ``counts`` per bin, ``pairs`` and
        ``violations`` (pairs with S >= 0.5)."""
        counts = [0] * self.bins if self.counts is None else [
            int(round(c)) for c in self.counts.tolist()]
        violations = 0 if self.violations is None else int(self.violations)
        edges = torch.linspace(0.0, 1.0, self.bins + 1, dtype=torch.float64).tolist()
        return {"edges": edges, "counts": counts, "pairs": sum(counts),
                "violations": violations}


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

    def extra(self) -> dict[str, Any]:
        return {"phase": self.phase, "phase_epoch": self.phase_epoch}


def phase_budgets(cfg: TRCConfig) -> list[tuple[str, int]]:
    """``[("vanilla", trc.vanilla_epochs), ("full", trc.full_epochs)]`` (TRC Sec. IV order).
    A budget of 0 + 0 epochs is refused when the config is loaded (``check_consistency``)."""
    return list(zip(PHASES, (cfg.vanilla_epochs, cfg.full_epochs), strict=True))


def phase_objective(objective: Objective, phase: str) -> Objective:
    """The objective of one phase: the configured top-rank counter with ``phase`` set."""
    if objective.metric != METRIC:
        raise ConfigError(f"train.method = 'trc' needs loss.metric = {METRIC!r}, got "
                          f"{objective.metric!r}")
    return objective.with_metric_params(phase=phase)


def run_trc(trainer: Trainer, objective: Objective, log: MetricsLog,
            progress: dict[str, Any]) -> None:
    """TRC Sec. IV: train the vanilla phase, then the full phase, resuming from ``progress``."""
    cfg = trainer.cfg
    budgets = phase_budgets(cfg.trc)
    objectives = {phase: phase_objective(objective, phase) for phase, _ in budgets}
    k = objective.metric_params.get("k")
    state = PhaseProgress.from_extra(progress)
    for phase, budget in budgets[PHASES.index(state.phase):]:
        done = state.phase_epoch if phase == state.phase else 0
        trainer.schedule_start = trainer.epoch - done
        while done < budget:
            histogram = SHistogram(cfg.trc.histogram_bins, k)
            stats = trainer.train_epoch(objectives[phase], on_batch=histogram)
            done += 1
            log_epoch(log, stats, phase=phase, phase_epoch=done)
            log.write("trc_histogram", epoch=stats.epoch, phase=phase, phase_epoch=done,
                      **histogram.record())
            if trainer.epoch % cfg.train.checkpoint_every == 0 or done == budget:
                trainer.save_checkpoint(extra=PhaseProgress(phase, done).extra())
            if cfg.train.eval_every and trainer.epoch % cfg.train.eval_every == 0:
                log.write("eval", epoch=trainer.epoch, phase=phase, phase_epoch=done,
                          **evaluate_trainer(trainer))

