"""Learning-rate schedules against hand-computed values (PLA Eq. 10, TRC steps)."""

from __future__ import annotations

import math

import pytest

from progreid.config import ScheduleConfig
from progreid.training.schedules import adam_beta1, exponential_decay_lr, learning_rate, step_lr


def test_pla_eq10_hand_values():
    a0 = 3e-4
    assert exponential_decay_lr(0, a0, 150, 300) == a0
    assert exponential_decay_lr(150, a0, 150, 300) == a0
    # halfway between e0 and e1: a0 * 0.001 ** 0.5
    assert exponential_decay_lr(225, a0, 150, 300) == pytest.approx(a0 * math.sqrt(0.001))
    assert exponential_decay_lr(300, a0, 150, 300) == pytest.approx(3e-7)
    assert exponential_decay_lr(151, a0, 150, 300) == pytest.approx(a0 * 0.001 ** (1 / 150))
    assert exponential_decay_lr(1000, a0, 150, 300) == pytest.approx(3e-7)


def test_trc_steps():
    milestones = [500, 1000]
    assert step_lr(0, 1.5e-4, milestones, 0.1) == 1.5e-4
    assert step_lr(499, 1.5e-4, milestones, 0.1) == 1.5e-4
    assert step_lr(500, 1.5e-4, milestones, 0.1) == pytest.approx(1.5e-5)
    assert step_lr(1200, 1.5e-4, milestones, 0.1) == pytest.approx(1.5e-6)


def test_warmup_then_schedule():
    cfg = ScheduleConfig(name="constant", warmup_epochs=4, warmup_factor=0.2)
    rates = [learning_rate(e, 1.0, cfg) for e in range(6)]
    assert rates == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])


def test_cosine_after_warmup_reaches_the_final_factor_at_e1():
    cfg = ScheduleConfig(name="cosine", warmup_epochs=1, warmup_factor=0.1, e1=5,
                         final_factor=0.01)
    rates = [learning_rate(e, 1.0, cfg) for e in range(7)]
    half = 0.01 + 0.99 * 0.5  # halfway through the cosine, epochs 1 to 5
    assert rates[0] == pytest.approx(0.1)  # warm-up
    assert rates[1] == pytest.approx(1.0) and rates[3] == pytest.approx(half)
    assert rates[5] == rates[6] == pytest.approx(0.01)  # held after e1
    assert all(a > b for a, b in zip(rates[1:5], rates[2:6], strict=True))
    assert rates[2] - 0.01 == pytest.approx(0.99 - (rates[4] - 0.01))  # symmetric around half


def test_warm_restarts_repeat_the_warm_up_and_the_cosine():
    """Two 5-epoch cycles (the schedule of TRC's two phases, on a one-phase method)."""
    once = ScheduleConfig(name="cosine", warmup_epochs=1, warmup_factor=0.1, e1=4,
                          final_factor=0.01)
    twice = once.model_copy(update={"restart_every": 5})
    cycle = [learning_rate(e, 1.0, once) for e in range(5)]
    assert [learning_rate(e, 1.0, twice) for e in range(10)] == cycle + cycle
    assert cycle[0] == pytest.approx(0.1) and cycle[4] == pytest.approx(0.01)
    assert learning_rate(7, 1.0, once) == pytest.approx(0.01)  # without restarts: held


def test_beta1_switch():
    cfg = ScheduleConfig(beta1_switch_epoch=150, beta1_after=0.5)
    assert adam_beta1(149, 0.9, cfg) == 0.9
    assert adam_beta1(150, 0.9, cfg) == 0.5
    assert adam_beta1(10_000, 0.9, ScheduleConfig()) == 0.9
