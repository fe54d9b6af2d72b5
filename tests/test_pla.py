"""PLA Algorithm 1: Eq. 9, candidate sampling, the round study (Eq. 6-8 through Optuna), exact
restoration after exploration, and `progreid train configs/pla/cpu-small.yaml` end to end with
resume after a finished round and after an interrupted exploration."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import progreid.training.pla as pla
from progreid.cli import main
from progreid.config import ConfigError, load_config
from progreid.data import build_dataset
from progreid.deploy.bundle import load_bundle
from progreid.losses import CrossEntropy, GeneralizedBatchHard
from progreid.training.objective import Objective
from progreid.training.pla import (
    HyperParams,
    RoundState,
    RoundStudy,
    SearchSpace,
    exploitation_length,
    loss_drop_objective,
    open_storage,
    sample_candidates,
)
from progreid.training.schedules import learning_rate
from progreid.training.trainer import NonFiniteLossError, Stage, Trainer
from progreid.utils.checkpoint import load_checkpoint, save_checkpoint
from progreid.utils.metrics_log import events, read_records

REPO = Path(__file__).resolve().parents[1]
CPU_SMALL = REPO / "configs" / "pla" / "cpu-small.yaml"
SPACE = SearchSpace((0.0, 2.0), (-0.1, 0.3), 4, 16)


# ----------------------------------------------------------------------------- Eq. 9

@pytest.mark.parametrize(("losses", "expected_drop", "first", "second", "value"), [
    ([2.0, 1.8, 1.6, 1.4], 0.15, 1.9, 1.5, abs(0.4 / 1.9 - 0.15)),
    ([1.0, 0.85], 0.15, 1.0, 0.85, 0.0),
    ([3.0, 2.0, 1.0], 0.15, 3.0, 1.0, abs(2.0 / 3.0 - 0.15)),  # odd: middle epoch dropped
    ([1.0, 1.0, 2.0, 2.0], 0.15, 1.0, 2.0, 1.15),  # the loss grew: drop -1
    ([4.0, 4.0], 0.15, 4.0, 4.0, 0.15),
    ([5.0, 1.0], 0.5, 5.0, 1.0, 0.3),
])
def test_eq9_hand_values(losses, expected_drop, first, second, value) -> None:
    result = loss_drop_objective(losses, expected_drop)
    assert result.first == pytest.approx(first)
    assert result.second == pytest.approx(second)
    assert result.value == pytest.approx(value)


@pytest.mark.parametrize(("losses", "match"), [
    ([1.0], "at least 2"), ([], "at least 2"), ([0.0, 0.0], "positive finite"),
    ([float("nan"), 1.0], "positive finite")])
def test_eq9_bad_input(losses, match) -> None:
    with pytest.raises(ValueError, match=match):
        loss_drop_objective(losses, 0.15)


# ----------------------------------------------------------------------------- candidates

bounds = st.tuples(st.floats(-5, 5), st.floats(0, 5)).map(lambda t: (t[0], t[0] + t[1]))


@settings(max_examples=50, deadline=None)
@given(bounds, bounds, st.integers(1, 9), st.integers(1, 20), st.integers(1, 30),
       st.integers(0, 2**32 - 1))
def test_candidates_within_bounds(lam, margin, k_max, p_max, count, seed) -> None:
    space = SearchSpace(lam, margin, k_max, p_max)
    candidates = sample_candidates(space, count, np.random.default_rng(seed))
    assert len(candidates) == count
    for w in candidates:
        assert lam[0] <= w.lam <= lam[1] and margin[0] <= w.margin <= margin[1]
        assert type(w.k) is int and type(w.p) is int
        assert 1 <= w.k <= k_max and 1 <= w.p <= p_max
    assert candidates == sample_candidates(space, count, np.random.default_rng(seed))


def test_candidates_cover_the_integer_range() -> None:
    candidates = sample_candidates(SPACE, 400, np.random.default_rng(0))
    assert {w.k for w in candidates} == {1, 2, 3, 4}
    assert {w.p for w in candidates} == set(range(1, 17))


def test_search_space_from_config() -> None:
    cfg = load_config(CPU_SMALL, ["pla.k_max=null", "pla.p_max=null", "data.p=8"])
    assert SearchSpace.from_config(cfg) == SearchSpace((0.0, 2.0), (-0.1, 0.3), 4, 8)
    cfg = load_config(CPU_SMALL, ["pla.p_max=40", "pla.lambda_range=[0.5, 1]"])
    assert SearchSpace.from_config(cfg) == SearchSpace((0.5, 1.0), (-0.1, 0.3), 4, 40)
    with pytest.raises(ConfigError, match="pla.k_max = 5 exceeds data.k = 4"):
        load_config(CPU_SMALL, ["pla.k_max=5"])


def test_hyper_params_objective_is_eq5() -> None:
    base = Objective(GeneralizedBatchHard(), lam=1.0, ce=CrossEntropy(0.0))
    objective = HyperParams(0.7, -0.05, 3, 2).objective(base)
    assert objective == Objective(GeneralizedBatchHard(k=3, p=2, margin=-0.05), lam=0.7,
                                  ce=CrossEntropy(0.0))
    assert HyperParams.from_dict(HyperParams(0.7, -0.05, 3, 2).as_dict()) == \
        HyperParams(0.7, -0.05, 3, 2)


# ----------------------------------------------------------------------------- budget M

@pytest.mark.parametrize(("count", "origin", "explored", "candidates", "expected"), [
    (False, 0, 0, 3, 10), (False, 20, 99, 5, 10), (False, 25, 0, 3, 5), (False, 30, 0, 3, 0),
    (True, 0, 0, 3, 10), (True, 10, 12, 4, 0), (True, 0, 12, 4, 2), (True, 0, 0, 8, 0)])
def test_exploitation_length(count, origin, explored, candidates, expected) -> None:
    cfg = load_config(CPU_SMALL, [f"pla.count_exploration={str(count).lower()}",
                                  "pla.explore_epochs=4", "pla.exploit_epochs=10",
                                  "pla.max_epochs=30"])
    assert exploitation_length(cfg, origin, explored, candidates) == expected


def test_round_state_survives_a_weights_only_checkpoint(tmp_path: Path) -> None:
    state = RoundState(2, 20, 28, [HyperParams(0.5, 0.1, 2, 3), HyperParams(1.5, 0.0, 1, 1)],
                       [1.5, 1.25], 1.25, 22)
    save_checkpoint(tmp_path / "c.pt", {"extra": state.to_progress()})
    assert RoundState.from_progress(load_checkpoint(tmp_path / "c.pt")["extra"]) == state
    following = state.next_round(HyperParams(1.0, 0.2, 4, 9), 30, 4)
    assert (following.round, following.origin, following.explored_epochs) == (3, 30, 36)
    assert following.candidates[-1] == HyperParams(1.0, 0.2, 4, 9)
    assert (following.losses, following.best_loss) == ([], None)
    with pytest.raises(RuntimeError, match="no PLA progress"):
        RoundState.from_progress({"phase": "vanilla"})


# ----------------------------------------------------------------------------- round study

def test_round_study_proposes_by_expected_improvement_and_persists(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    study = RoundStudy(storage, 0, SPACE, seed=0, ei_samples=64)
    candidates = sample_candidates(SPACE, 6, np.random.default_rng(1))
    values = [abs(w.lam - 1.0) + 0.1 * w.k for w in candidates]
    for index, (w, value) in enumerate(zip(candidates, values, strict=True)):
        drop = pla.LossDrop(2.0, 1.5, value)
        study.record_exploration(index, w, [2.0, 1.5], drop)
    study.record_exploration(6, HyperParams(2.0, 0.3, 4, 16), None, None)  # diverged
    assert sorted(study.explorations()) == list(range(7))
    assert study.proposal() is None
    proposal = study.propose()
    w = proposal.w
    assert 0.0 <= w.lam <= 2.0 and -0.1 <= w.margin <= 0.3
    assert 1 <= w.k <= 4 and 1 <= w.p <= 16 and type(w.k) is int and type(w.p) is int
    assert proposal.incumbent.candidate == int(np.argmin(values))
    assert proposal.incumbent.f == pytest.approx(min(values))
    # the GP saw the six finished explorations (not the diverged one) and nothing else
    assert [(o.round, o.candidate, o.w) for o in proposal.observations] == \
        [(0, index, w) for index, w in enumerate(candidates)]
    assert [o.f for o in proposal.observations] == pytest.approx(values)
    assert proposal.log_ei is not None and np.isfinite(proposal.log_ei)
    assert study.sampler._n_preliminary_samples == 64  # the ei_samples setting reached Optuna
    # a new process (resume) reads the same proposal and explorations back from SQLite
    reopened = RoundStudy(open_storage(tmp_path), 0, SPACE, seed=0, ei_samples=64)
    assert reopened.proposal() == proposal
    assert reopened.explorations()[2].value == pytest.approx(values[2])
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert names == {"round-000"}
    # a fresh start drops the studies of an attempt that died before its first checkpoint
    assert optuna.get_all_study_summaries(open_storage(tmp_path, fresh=True)) == []


def test_gp_history_all_adds_the_earlier_rounds(tmp_path: Path) -> None:
    """``pla.gp_history: all`` (not in the paper): round 1's GP also sees round 0's
    explorations; ``round`` (the default, the paper) only its own."""
    storage = open_storage(tmp_path)
    rng = np.random.default_rng(3)
    for index in (0, 1):
        study = RoundStudy(storage, index, SPACE, seed=0, ei_samples=32)
        for candidate, w in enumerate(sample_candidates(SPACE, 3, rng)):
            study.record_exploration(candidate, w, [1.0, 0.9], pla.LossDrop(1.0, 0.9, w.lam))
    study.record_exploration(3, HyperParams(1.0, 0.0, 1, 1), None, None)  # diverged
    history = pla.earlier_observations(storage, 1)
    assert [(o.round, o.candidate) for o in history] == [(0, 0), (0, 1), (0, 2)]
    own = study.propose()
    assert [(o.round, o.candidate) for o in own.observations] == [(1, 0), (1, 1), (1, 2)]
    every = RoundStudy(open_storage(tmp_path / "all"), 1, SPACE, 0, 32)
    for o in own.observations:
        every.record_exploration(o.candidate, o.w, [1.0, 0.9], pla.LossDrop(1.0, 0.9, o.f))
    proposal = every.propose(history)
    assert proposal.observations == (*history, *own.observations)
    assert proposal.record()["incumbent_f"] == min(o.f for o in proposal.observations)
    assert every.proposal() == proposal  # read back from the study, observations included


def test_round_study_with_every_exploration_diverged(tmp_path: Path) -> None:
    study = RoundStudy(open_storage(tmp_path), 3, SPACE, seed=0, ei_samples=16)
    study.record_exploration(0, HyperParams(1.0, 0.0, 1, 1), None, None)
    with pytest.raises(RuntimeError, match="every exploration diverged"):
        study.propose()


def test_round_study_with_fixed_dimensions(tmp_path: Path) -> None:
    """ablation-triplet.yaml fixes lambda at 1 (and K may be 1): those stay fixed in w'."""
    space = SearchSpace((1.0, 1.0), (-0.1, 0.3), 1, 16)
    study = RoundStudy(open_storage(tmp_path), 0, space, seed=0, ei_samples=32)
    for index, w in enumerate(sample_candidates(space, 3, np.random.default_rng(0))):
        study.record_exploration(index, w, [1.0, 0.9], pla.LossDrop(1.0, 0.9, w.margin + 0.5))
    w = study.propose().w
    assert (w.lam, w.k) == (1.0, 1) and -0.1 <= w.margin <= 0.3 and 1 <= w.p <= 16


def explore(trainer: Trainer, objective: Objective, epochs: int) -> list[float] | None:
    """An exploration stage of ``epochs`` epochs: its losses, or None when it diverged."""
    stage = Stage(objective, trainer.epoch + epochs, kept=False)
    trainer.run_stage(stage, ())
    return None if stage.diverged else stage.losses


def test_diverged_exploration_is_reported_not_raised() -> None:
    class Diverging(Trainer):
        def __init__(self) -> None:
            self.epoch = 0

        def train_epoch(self, objective, hooks=()):
            raise NonFiniteLossError("loss became nan")

    assert explore(Diverging(), Objective(), 4) is None
    with pytest.raises(NonFiniteLossError):
        Diverging().run_stage(Stage(Objective(), 4), ())


# ----------------------------------------------------------------------------- restoration

@pytest.fixture(scope="module")
def tiny_root(tiny_pedestrians) -> Path:
    return tiny_pedestrians(seed=5)


TINY = ["data.dataset=synthetic", "data.height=32", "data.width=16", "data.p=4", "data.k=4",
        "data.batches_per_epoch=1", "data.workers=0", "model.width=0.125",
        "model.embedding_dim=16", "train.progress=false", "train.device=cpu",
        "eval.batch_size=64", "eval.pca_dim=8"]


def flat_state(value, prefix: str = "") -> dict[str, object]:
    """Every leaf of a nested state (tensors, arrays, numbers) by its path."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items()
                for k, v in flat_state(item, f"{prefix}/{key}").items()}
    if isinstance(value, list | tuple):
        return {k: v for i, item in enumerate(value)
                for k, v in flat_state(item, f"{prefix}/{i}").items()}
    return {prefix: value}


def test_exploration_restores_bit_for_bit(tiny_root: Path, tmp_path: Path) -> None:
    cfg = load_config(CPU_SMALL, [*TINY, f"data.root={tiny_root}"])
    trainer = Trainer(cfg, build_dataset("synthetic", tiny_root), tmp_path)
    base = Objective.from_config(cfg.loss)
    trainer.train_epoch(HyperParams(1.0, 0.0, 1, 1).objective(base))
    before = flat_state(trainer.state_dict())
    before = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in before.items()}
    snapshot = trainer.snapshot()
    w = HyperParams(1.3, 0.2, 2, 3)
    losses = explore(trainer, w.objective(base), 2)
    assert trainer.epoch == 3 and len(losses) == 2
    changed = flat_state(trainer.state_dict())
    assert not torch.equal(changed["/model/ce_head.weight"], before["/model/ce_head.weight"])
    trainer.restore(snapshot)
    after = flat_state(trainer.state_dict())
    assert after.keys() == before.keys()
    for key, value in before.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(after[key], value), key
        else:
            assert after[key] == value, key
    # the restored state trains exactly as the exploration's first epoch did
    assert explore(trainer, w.objective(base), 1) == losses[:1]


@pytest.mark.parametrize("position", [0, 3])
def test_exploration_rate_holds_the_schedule_position(tiny_root: Path, tmp_path: Path,
                                                      position: int) -> None:
    """A warm-up and a step inside a 4-epoch exploration leave its rate where the round began."""
    cfg = load_config(CPU_SMALL, [*TINY, f"data.root={tiny_root}", "schedule.name=step",
                                  "schedule.warmup_epochs=2", "schedule.warmup_factor=0.1",
                                  "schedule.milestones=[1, 4]"])
    trainer = Trainer(cfg, build_dataset("synthetic", tiny_root), tmp_path)
    trainer.epoch = 5
    rate = pla.ExplorationRate()
    rate.begin(position)
    objective = HyperParams(1.0, 0.0, 1, 1).objective(Objective.from_config(cfg.loss))
    trainer.run_stage(Stage(objective, 9, schedule_start=5 - position, kept=False), [rate])
    expected = learning_rate(position, cfg.optim.lr, cfg.schedule)
    assert rate.lrs == pytest.approx([expected] * 4)
    # a kept stage follows the schedule untouched
    trainer.run_stage(Stage(objective, 11, schedule_start=9), [rate])
    assert rate.lrs == pytest.approx([expected] * 4)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(
        learning_rate(1, cfg.optim.lr, cfg.schedule))


def test_continue_from_best_takes_weights_and_moments_only(tiny_root: Path,
                                                           tmp_path: Path) -> None:
    cfg = load_config(CPU_SMALL, [*TINY, f"data.root={tiny_root}"])
    trainer = Trainer(cfg, build_dataset("synthetic", tiny_root), tmp_path)
    objective = HyperParams(1.0, 0.0, 1, 1).objective(Objective.from_config(cfg.loss))
    trainer.train_epoch(objective)
    trainer.save_checkpoint(path=tmp_path / "checkpoints" / "best.pt")
    best = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    best_moments = trainer.optimizer.state_dict()["state"][0]["exp_avg"].clone()
    trainer.train_epoch(objective)
    sampler = trainer.sampler.state_dict()
    pla._continue_from_best(trainer)
    assert trainer.epoch == 2 and trainer.sampler.state_dict() == sampler
    assert all(torch.equal(v, best[k]) for k, v in trainer.model.state_dict().items())
    assert torch.equal(trainer.optimizer.state_dict()["state"][0]["exp_avg"], best_moments)


# ----------------------------------------------------------------------------- end to end

def train_tiny(root: Path, run_dir: Path, max_epochs: int, resume: bool = False) -> int:
    """``progreid train configs/pla/cpu-small.yaml`` on the tiny synthetic set: 2 initial
    candidates, 2-epoch explorations, 1-epoch exploitations (one round per kept epoch), and a
    2-epoch warm-up (x0.1, then x0.55) that restarts with each round."""
    overrides = [*TINY, f"data.root={root}", f"train.output_dir={run_dir}",
                 "pla.initial_candidates=2", "pla.explore_epochs=2", "pla.exploit_epochs=1",
                 f"pla.max_epochs={max_epochs}", "pla.ei_samples=64", "train.checkpoint_every=1",
                 "schedule.warmup_epochs=2", "schedule.warmup_factor=0.1"]
    args = ["train", str(CPU_SMALL), *(a for o in overrides for a in ("--set", o))]
    return main(args + (["--resume"] if resume else []))


def records(run_dir: Path, event: str) -> list[dict]:
    return events(read_records(run_dir), event)


def explorations(run_dir: Path) -> list[tuple[int, int]]:
    return [(r["round"], r["candidate"]) for r in records(run_dir, "pla_explore")]


@pytest.fixture(scope="module")
def full_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "full"
    assert train_tiny(tiny_root, run_dir, max_epochs=2) == 0
    return run_dir


def test_log_shows_every_round(full_run: Path) -> None:
    start = records(full_run, "pla_start")
    assert len(start) == 1 and len(start[0]["candidates"]) == 2
    settings = start[0]["settings"]
    assert (settings["initial_candidates"], settings["explore_epochs"],
            settings["gp_history"]) == (2, 2, "round")
    assert start[0]["space"] == {"lam": [0.0, 2.0], "margin": [-0.1, 0.3], "k_max": 4,
                                 "p_max": 16}
    assert explorations(full_run) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    rounds = records(full_run, "pla_round")
    assert [(r["round"], r["origin"], r["epoch"]) for r in rounds] == [(0, 0, 1), (1, 1, 2)]
    assert [len(r["candidates"]) for r in rounds] == [2, 3]
    for record in rounds:
        fs = [c["f"] for c in record["candidates"]]
        assert all(isinstance(f, float) and f >= 0 for f in fs)
        for c in record["candidates"]:
            drop = loss_drop_objective([c["loss_first"], c["loss_second"]], 0.15)
            assert c["f"] == pytest.approx(drop.value)
        proposal = record["proposal"]
        assert proposal["incumbent_f"] == pytest.approx(min(fs))
        w = HyperParams.from_dict(proposal["w"])
        assert 0 <= w.lam <= 2 and -0.1 <= w.margin <= 0.3 and 1 <= w.k <= 4 and 1 <= w.p <= 16
        assert len(record["exploit_losses"]) == 1
    # w' of round 0 is the last candidate of round 1
    assert rounds[1]["candidates"][2]["w"] == rounds[0]["proposal"]["w"]
    proposals = records(full_run, "pla_proposal")
    assert [p["w"] for p in proposals] == [r["proposal"]["w"] for r in rounds]
    # what the GP saw: exactly the explorations of its round (gp_history: round, the paper)
    explored = records(full_run, "pla_explore")
    for proposal in proposals:
        seen = [{"round": e["round"], "candidate": e["candidate"], "w": e["w"], "f": e["f"]}
                for e in explored if e["round"] == proposal["round"]]
        assert proposal["observations"] == seen
    epochs = records(full_run, "epoch")
    assert [(r["epoch"], r["round"]) for r in epochs] == [(1, 0), (2, 1)]
    # the schedule restarts with each round: both kept epochs run at the warm-up's first rate
    assert [r["lr"] for r in epochs] == pytest.approx([1e-4, 1e-4])


def test_every_exploration_runs_at_one_learning_rate(full_run: Path) -> None:
    """Eq. 9 compares the two halves of an exploration: they must run at the same rate, here the
    round's first (the warm-up would otherwise raise it from 1e-4 to 5.5e-4 in the second)."""
    for record in records(full_run, "pla_explore"):
        assert record["lrs"] == pytest.approx([1e-4, 1e-4])
        assert (record["half_epochs"], record["half_batches"]) == (1, 1)
        drop = loss_drop_objective(record["losses"], 0.15)
        assert (record["loss_first"], record["loss_second"], record["f"]) == \
            pytest.approx((drop.first, drop.second, drop.value))


def test_run_folder_holds_study_best_checkpoint_and_pca(full_run: Path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{full_run / 'pla_study.db'}")
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == ["round-000", "round-001"]
    best = load_checkpoint(full_run / "checkpoints" / "best.pt")["extra"]
    assert best["round"] == 1 and best["epoch"] == 2
    bundle = load_bundle(full_run)
    assert bundle.projection is not None
    assert tuple(bundle.projection.components.shape) == (8, 32)
    result = json.loads((full_run / "results.json").read_text())
    assert result["epoch"] == 2 and 0 <= result["rank1"] <= 100


def final_state(run_dir: Path) -> tuple[list[float], dict[str, torch.Tensor]]:
    losses = [r["loss"] for r in records(run_dir, "epoch")]
    return losses, load_bundle(run_dir).model.state_dict()


def assert_same_training(run_dir: Path, reference: Path) -> None:
    losses, weights = final_state(run_dir)
    ref_losses, ref_weights = final_state(reference)
    assert losses == ref_losses
    assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights)
    assert ([r["proposal"] for r in records(run_dir, "pla_round")]
            == [r["proposal"] for r in records(reference, "pla_round")])


def test_resume_after_a_finished_round(tiny_root: Path, full_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "two-step"
    assert train_tiny(tiny_root, run_dir, max_epochs=1) == 0
    assert explorations(run_dir) == [(0, 0), (0, 1)]
    assert train_tiny(tiny_root, run_dir, max_epochs=2, resume=True) == 0
    assert explorations(run_dir) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert [r["epoch"] for r in records(run_dir, "resume")] == [1]
    assert_same_training(run_dir, full_run)


def test_resume_after_an_interrupted_exploration(tiny_root: Path, full_run: Path,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    run_stage = Trainer.run_stage
    calls: list[int] = []
    interrupt = [True]

    def interrupted(trainer, stage, hooks):
        if not stage.kept:
            calls.append(trainer.epoch)
            if interrupt[0] and len(calls) == 2:  # killed during round 0's second exploration
                run_stage(trainer, dataclasses.replace(stage, end=trainer.epoch + 1), hooks)
                raise KeyboardInterrupt
        return run_stage(trainer, stage, hooks)

    monkeypatch.setattr(Trainer, "run_stage", interrupted)
    run_dir = tmp_path / "interrupted"
    assert train_tiny(tiny_root, run_dir, max_epochs=2) == 130
    assert explorations(run_dir) == [(0, 0)]
    calls.clear()
    interrupt[0] = False
    assert train_tiny(tiny_root, run_dir, max_epochs=2, resume=True) == 0
    # only the interrupted exploration of round 0 is run again, then round 1's three
    assert len(calls) == 4
    assert explorations(run_dir) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert_same_training(run_dir, full_run)


def test_pla_needs_the_generalized_batch_hard_metric(tiny_root: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    args = ["train", str(CPU_SMALL), "--set", f"data.root={tiny_root}",
            *(a for o in [*TINY, f"train.output_dir={tmp_path / 'r'}", "loss.metric=batch_hard"]
              for a in ("--set", o))]
    assert main(args) == 2
    assert "loss.metric = 'generalized_batch_hard'" in capsys.readouterr().err


def test_the_optuna_internals_pla_relies_on_have_not_moved() -> None:
    """ExpectedImprovementSampler sets ``GPSampler._n_preliminary_samples`` and overrides
    ``GPSampler._optimize_acqf(acqf, best_params)``: Optuna 5 internals (pyproject pins optuna
    below 6). If this fails, Optuna changed them and PLA's proposal code must follow."""
    assert optuna.__version__.split(".")[0] == "5"
    assert isinstance(optuna.samplers.GPSampler(seed=0)._n_preliminary_samples, int)
    parameters = inspect.signature(optuna.samplers.GPSampler._optimize_acqf).parameters
    assert list(parameters) == ["self", "acqf", "best_params"]
