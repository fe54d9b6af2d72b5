"""Learning-rate and Adam-beta1 schedules, as pure functions of the epoch index."""

from __future__ import annotations

import math
from bisect import bisect_right

from progreid.config import ScheduleConfig


def exponential_decay_lr(epoch: int, base_lr: float, e0: int, e1: int,
                         final_factor: float = 0.001) -> float:
    """PLA Eq. 10: ``base_lr`` until ``e0``, then decaying to ``final_factor * base_lr`` at ``e1``.

    ``epoch`` is the number of epochs already completed. Past ``e1`` the rate stays at its final
    value (the paper stops at e1; Algorithm 1 trains longer, so we hold the last value).
    """
    if epoch <= e0:
        return base_lr
    progress = min(epoch, e1) - e0
    return base_lr * final_factor ** (progress / (e1 - e0))


def step_lr(epoch: int, base_lr: float, milestones: list[int], gamma: float) -> float:
    """Multiply by ``gamma`` at each milestone (TRC Sec. V-B: 1.5e-4 -> 1.5e-5 -> 1.5e-6)."""
    return base_lr * gamma ** bisect_right(milestones, epoch)


def cosine_lr(epoch: int, base_lr: float, start: int, end: int, final_factor: float) -> float:
    """Half a cosine from ``base_lr`` at ``start`` to ``final_factor * base_lr`` at ``end``
    (Loshchilov & Hutter 2017; restarts: :func:`learning_rate`); constant outside
    ``[start, end]``."""
    progress = min(max(epoch - start, 0) / max(end - start, 1), 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return base_lr * (final_factor + (1.0 - final_factor) * cosine)


def warmup_factor(epoch: int, warmup_epochs: int, start_factor: float) -> float:
    """Linear warm-up from ``start_factor`` to 1 over the first ``warmup_epochs`` epochs."""
    if epoch >= warmup_epochs:
        return 1.0
    return start_factor + (1.0 - start_factor) * epoch / warmup_epochs


def learning_rate(epoch: int, base_lr: float, cfg: ScheduleConfig) -> float:
    """Learning rate for the epoch that starts after ``epoch`` completed epochs; with
    ``cfg.restart_every`` the schedule, warm-up included, starts again every so many epochs."""
    if cfg.restart_every is not None:
        epoch %= cfg.restart_every
    if cfg.name == "exponential":
        lr = exponential_decay_lr(epoch, base_lr, cfg.e0, cfg.e1, cfg.final_factor)
    elif cfg.name == "cosine":
        lr = cosine_lr(epoch, base_lr, cfg.warmup_epochs, cfg.e1, cfg.final_factor)
    elif cfg.name == "step":
        lr = step_lr(epoch, base_lr, cfg.milestones, cfg.gamma)
    else:
        lr = base_lr
    return lr * warmup_factor(epoch, cfg.warmup_epochs, cfg.warmup_factor)


def adam_beta1(epoch: int, beta1: float, cfg: ScheduleConfig) -> float:
    """PLA Sec. 4.2: beta1 = 0.9 for the first e0 epochs, 0.5 afterwards (when configured)."""
    if cfg.beta1_switch_epoch is not None and epoch >= cfg.beta1_switch_epoch:
        return cfg.beta1_after
    return beta1
