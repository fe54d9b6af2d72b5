"""The hooks of every training run, in the one order :func:`training_hooks` gives them.

After each kept epoch: the ``epoch`` record, the plan's own hooks (TRC's S histogram), the
evaluation (every ``train.eval_every`` epochs), the stage's lowest-loss checkpoint (PLA), then
``checkpoints/last.pt`` (every ``train.checkpoint_every`` epochs and at the end of a stage).
An epoch's evaluation comes before its checkpoint, so a run killed in between repeats both on
``--resume`` and its log misses no evaluation.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from tqdm import tqdm

from progreid.evaluation.features import Embedder
from progreid.evaluation.pca import Projection
from progreid.evaluation.pipeline import evaluate_model
from progreid.training.trainer import EpochStats, Hook, Plan, Stage, Trainer
from progreid.utils.metrics_log import MetricsLog

BEST_CHECKPOINT = "best.pt"


def evaluate_trainer(trainer: Trainer, projection: Projection | None = None) -> dict[str, float]:
    """The metrics of the model being trained (with ``projection``: the final PCA)."""
    return evaluate_model(Embedder.configured(trainer.model, trainer.cfg, projection),
                          trainer.dataset, trainer.cfg.eval, trainer.device,
                          trainer.cfg.data.workers)


@dataclass
class EpochLog(Hook):
    """One ``epoch`` record: the epoch's mean loss terms, learning rate, speed and stage."""

    log: MetricsLog

    def after_epoch(self, trainer: Trainer, stage: Stage, stats: EpochStats) -> None:
        self.log.write("epoch", epoch=stats.epoch, lr=stats.lr, seconds=round(stats.seconds, 3),
                       images_per_second=round(stats.images / max(stats.seconds, 1e-9), 2),
                       **stage.fields(stats.epoch), **stats.terms)


class ConsoleLine(Hook):
    """One line per epoch on the terminal (stderr, rank 0, with ``train.progress``): epoch, the
    stage's fields (PLA round and candidate, TRC phase), loss terms, learning rate, speed."""

    every_stage = True

    def after_epoch(self, trainer: Trainer, stage: Stage, stats: EpochStats) -> None:
        if not (trainer.cfg.train.progress and trainer.is_main):
            return
        where = " ".join(f"{key} {value}" for key, value in stage.fields(stats.epoch).items())
        terms = "  ".join(f"{name} {value:.4g}"
                           for name, value in ({"loss": stats.loss} | stats.terms).items())
        exploring = "" if stage.kept else " (exploration)"
        tqdm.write(f"epoch {stats.epoch:>{len(str(stage.end))}}/{stage.end}{exploring}"
                   f"{'  ' + where if where else ''}  {terms}  lr {stats.lr:.2e}  "
                   f"{stats.images / max(stats.seconds, 1e-9):.0f} img/s  {stats.seconds:.1f} s",
                   file=sys.stderr)


@dataclass
class Evaluation(Hook):
    """An ``eval`` record every ``train.eval_every`` epochs (0: none during training)."""

    log: MetricsLog

    def after_epoch(self, trainer: Trainer, stage: Stage, stats: EpochStats) -> None:
        every = trainer.cfg.train.eval_every
        if every and trainer.epoch % every == 0:
            metrics = evaluate_trainer(trainer)
            self.log.write("eval", epoch=trainer.epoch, **stage.fields(trainer.epoch), **metrics)
            if trainer.cfg.train.progress and trainer.is_main:
                tqdm.write(f"epoch {trainer.epoch} evaluation: rank-1 {metrics['rank1']:.1f}  "
                           f"mAP {metrics['mAP']:.1f}", file=sys.stderr)


class BestCheckpoint(Hook):
    """The lowest-loss epoch of a stage with ``best_info`` in ``checkpoints/best.pt`` (PLA
    Algorithm 1: "save the model with lowest loss")."""

    def after_epoch(self, trainer: Trainer, stage: Stage, stats: EpochStats) -> None:
        if stage.best_info is None or (stage.best_loss is not None
                                       and stats.loss >= stage.best_loss):
            return
        stage.best_loss, stage.best_epoch = stats.loss, trainer.epoch
        trainer.save_checkpoint(extra={**stage.best_info, "loss": stats.loss,
                                       "epoch": trainer.epoch},
                                path=trainer.checkpoint_path.with_name(BEST_CHECKPOINT))


@dataclass
class Checkpoint(Hook):
    """``checkpoints/last.pt`` with the plan's progress, every ``train.checkpoint_every``
    epochs and at the end of each stage."""

    plan: Plan

    def after_epoch(self, trainer: Trainer, stage: Stage, stats: EpochStats) -> None:
        if trainer.epoch % trainer.cfg.train.checkpoint_every == 0 or trainer.epoch == stage.end:
            trainer.save_checkpoint(extra=self.plan.progress(trainer))


def training_hooks(plan: Plan, log: MetricsLog) -> list[Hook]:
    """The hooks of a run of ``plan``, in the order that is correct for ``--resume``."""
    return [EpochLog(log), ConsoleLine(), *plan.hooks(), Evaluation(log), BestCheckpoint(),
            Checkpoint(plan)]
