"""PLA Algorithm 1: progressive training with Bayesian optimisation of w = (lambda, m, k, p).

Each round starts from the current weights theta and a candidate set W:

1. *Exploration*: for every w in W, train ``pla.explore_epochs`` epochs with the composite loss
   ``CE + lambda * L_GBH^{k,p}(margin m)`` (PLA Eq. 3-5), score it with the loss-drop objective
   f(w) of Eq. 9, then restore theta, optimiser moments, sampler and RNGs exactly. Every
   exploration epoch runs at the learning rate (and Adam beta1) of the round's first epoch
   (:class:`ExplorationRate`): Eq. 9 compares the two halves' losses, which a warm-up or decay
   inside the exploration would move whatever w is.
2. *Proposal*: fit a Gaussian process to the observations (w, f(w)) and pick w' by expected
   improvement (Eq. 6-8). This is Optuna's ``GPSampler`` (see :class:`ExpectedImprovementSampler`
   for how it maps onto the equations); each round is a study in ``pla_study.db``.
3. *Exploitation*: train ``pla.exploit_epochs`` epochs with w', keeping the lowest-loss epoch in
   ``checkpoints/best.pt``; add w' to W.

Rounds repeat until the epoch budget M (``pla.max_epochs``) is spent. Choices where the paper is
silent (all configurable in the ``pla`` section):

- ``count_exploration`` (default false): M counts the epochs that are kept (exploitation); the
  explorations, which are undone, are extra. True makes M count every epoch trained.
- ``schedule_scope`` (default ``round``): the Eq. 10 learning rate, the beta1 switch and any
  warm-up restart at each round (``Stage.schedule_start`` = the round's first epoch): the
  paper's exploit length, 300, equals its e1, and Eq. 9 expects a 15% loss drop that a rate
  already decayed to 0.001 x alpha0 cannot give. ``global`` runs one schedule over the kept
  epochs. Either way explorations are held at the schedule position of the round's start, and
  restoration rewinds the epoch counter with the weights.
- ``continue_from`` (default ``best``): the next round (and the final model) starts from the
  round's lowest-loss epoch ("save the model with lowest loss"), keeping the epoch counter;
  ``last`` continues from the last epoch.
- ``gp_history`` (default ``round``, the paper): the GP of a round is fitted to that round's
  explorations only. ``all`` (not in the paper) adds every earlier round's explorations, which
  were measured from other weights.

The records say what each step saw: ``pla_start`` the settings and the box, ``pla_explore`` the
epoch losses, the learning rate of every epoch, the halves' length and means and f(w),
``pla_proposal`` the observations the GP was fitted to and w'.

Resuming: a checkpoint is written when a round starts (its snapshot) and during exploitation.
Finished explorations are COMPLETE trials of the round's study and the proposal is a trial marked
``role=proposal``; both are committed to SQLite the moment they finish, so a resumed run re-runs
only an exploration that was cut short, from the round's snapshot.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.samplers import GPSampler
from optuna.trial import FrozenTrial, TrialState, create_trial

from progreid.config import Config
from progreid.training.hooks import BEST_CHECKPOINT
from progreid.training.objective import Objective
from progreid.training.trainer import EpochStats, Hook, Plan, Stage, Trainer
from progreid.utils.checkpoint import load_checkpoint
from progreid.utils.distributed import main_process_result
from progreid.utils.metrics_log import MetricsLog

STUDY_FILE = "pla_study.db"


# --------------------------------------------------------------------------- hyper-parameters
@dataclass(frozen=True)
class HyperParams:
    """w = (lambda, m, k, p) of PLA Algorithm 1 (Eq. 3-5)."""

    lam: float
    margin: float
    k: int
    p: int

    def as_dict(self) -> dict[str, Any]:
        return {"lambda": self.lam, "margin": self.margin, "k": self.k, "p": self.p}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HyperParams:
        return cls(float(values["lambda"]), float(values["margin"]), int(values["k"]),
                   int(values["p"]))

    def objective(self, base: Objective) -> Objective:
        """The composite loss of PLA Eq. 5 with this w: ``CE + lambda * L_GBH^{k,p}(m)``."""
        return base.with_metric(lam=self.lam, k=self.k, p=self.p, margin=self.margin)


@dataclass(frozen=True)
class SearchSpace:
    """The bounds of Algorithm 1: lambda, m in closed intervals, k in 1..K, p in 1..P."""

    lam: tuple[float, float]
    margin: tuple[float, float]
    k_max: int
    p_max: int

    @classmethod
    def from_config(cls, cfg: Config) -> SearchSpace:
        """K = ``pla.k_max`` (default ``data.k``), P = ``pla.p_max`` (default ``data.p``).

        k counts positives of an anchor, of which a batch holds ``data.k - 1``, so K above
        ``data.k`` would only repeat the clamped value. p counts negatives (``(data.p - 1) *
        data.k`` of them), so P may exceed ``data.p``.
        """
        k_max = cfg.pla.k_max if cfg.pla.k_max is not None else cfg.data.k
        p_max = cfg.pla.p_max if cfg.pla.p_max is not None else cfg.data.p
        return cls(tuple(cfg.pla.lambda_range), tuple(cfg.pla.margin_range), k_max, p_max)

    def distributions(self) -> dict[str, BaseDistribution]:
        return {"lambda": FloatDistribution(*self.lam),
                "margin": FloatDistribution(*self.margin),
                "k": IntDistribution(1, self.k_max), "p": IntDistribution(1, self.p_max)}


def sample_candidates(space: SearchSpace, count: int, rng: np.random.Generator
                      ) -> list[HyperParams]:
    """The N random initial candidates of Algorithm 1: lambda and m uniform in their intervals,
    k and p uniform integers in 1..K and 1..P."""
    return [HyperParams(float(rng.uniform(*space.lam)), float(rng.uniform(*space.margin)),
                        int(rng.integers(1, space.k_max + 1)),
                        int(rng.integers(1, space.p_max + 1)))
            for _ in range(count)]


# --------------------------------------------------------------------------- Eq. 9
@dataclass(frozen=True)
class LossDrop:
    """The exploration summary behind Eq. 9: mean loss of each half and the objective f(w)."""

    first: float
    second: float
    value: float


def loss_drop_objective(epoch_losses: list[float], expected_drop: float) -> LossDrop:
    """PLA Eq. 9: ``f(w) = |(L_t - L_t') / L_t - ED|``.

    ``L_t`` and ``L_t'`` are the mean per-epoch losses of the first and second half of the
    exploration (epochs 1-10 and 11-20 in the paper). With an odd number of epochs the middle one
    belongs to neither half, so both means cover the same number of epochs.
    """
    half = len(epoch_losses) // 2
    if half < 1:
        raise ValueError(f"Eq. 9 needs at least 2 exploration epochs, got {len(epoch_losses)}")
    first = float(np.mean(epoch_losses[:half]))
    second = float(np.mean(epoch_losses[-half:]))
    if not (math.isfinite(first) and math.isfinite(second)) or first <= 0:
        raise ValueError(f"Eq. 9 needs a positive finite first-half loss, got {first} "
                         f"(second half {second}); a model without a cross-entropy head needs "
                         "pla.lambda_range above 0")
    return LossDrop(first, second, abs((first - second) / first - expected_drop))


class ExplorationRate(Hook):
    """Holds every exploration epoch at the learning rate (and Adam beta1) of the round's first
    epoch, and records the rate each exploration epoch ran at (``lrs``).

    The trainer evaluates the schedule at ``epoch - schedule_start``; setting ``schedule_start``
    to ``epoch - position`` before each exploration epoch keeps that at ``position``, the
    round's start. Kept (exploitation) epochs follow the schedule untouched.
    """

    every_stage = True

    def __init__(self) -> None:
        self.position = 0
        self.lrs: list[float] = []

    def begin(self, position: int) -> None:
        """Before an exploration: hold it at schedule position ``position``."""
        self.position, self.lrs = position, []

    def before_epoch(self, trainer: Trainer, stage: Stage) -> None:
        if not stage.kept:
            trainer.schedule_start = trainer.epoch - self.position

    def after_epoch(self, trainer: Trainer, stage: Stage, stats: EpochStats) -> None:
        if not stage.kept:
            self.lrs.append(stats.lr)


# --------------------------------------------------------------------------- budget
def exploitation_length(cfg: Config, origin: int, explored_before: int,
                        num_candidates: int) -> int:
    """Epochs the round starting at epoch ``origin`` exploits within the budget M (0: none);
    with ``pla.count_exploration`` the ``explored_before`` epochs of earlier rounds' explorations
    and this round's ``num_candidates * explore_epochs`` are charged to M as well."""
    pla = cfg.pla
    spent = origin
    if pla.count_exploration:
        spent += explored_before + num_candidates * pla.explore_epochs
    return max(0, min(pla.exploit_epochs, pla.max_epochs - spent))


# --------------------------------------------------------------------------- Optuna (Eq. 6-8)
class ExpectedImprovementSampler(GPSampler):
    """Optuna's GP sampler as the Bayesian optimisation of PLA Eq. 6-8.

    - Eq. 6: the GP posterior given the observations (w, f(w)) (:class:`Observation`). Optuna
      standardises f, uses a Matern-5/2 kernel with one length scale per dimension (the paper's
      Gaussian kernel with a bandwidth matrix B "calculated from given samples"; here B is fitted
      by maximum a-posteriori marginal likelihood) and a fitted noise term, since f is measured
      on noisy mini-batches. k and p are integer dimensions.
    - Eq. 7-8: EI against the best f observed, in closed form (Optuna evaluates its logarithm
      for numerical stability; f is minimised, so Z is taken with the opposite sign).
    - "A fixed-size of new hyper-parameters are sampled where the one that maximizes EI is
      chosen": ``ei_samples`` quasi-random candidates are scored and the best one is refined by
      Optuna's local search (L-BFGS-B for lambda and m, line search for k and p).

    ``_n_preliminary_samples`` and ``_optimize_acqf`` are the knobs GPSampler keeps for changing
    its acquisition optimisation (Optuna 5; an Optuna without them is refused with a clear
    error). ``last_log_ei`` is the log-EI (standardised units) of the last proposal.
    """

    def __init__(self, seed: int, ei_samples: int) -> None:
        super().__init__(seed=seed, n_startup_trials=1, warn_independent_sampling=False)
        if not hasattr(self, "_n_preliminary_samples"):
            raise RuntimeError(f"optuna {optuna.__version__}: GPSampler has no "
                               "_n_preliminary_samples; PLA needs optuna >= 5.0")
        self._n_preliminary_samples = ei_samples
        self.last_log_ei: float | None = None

    def _optimize_acqf(self, acqf: Any, best_params: np.ndarray | None) -> np.ndarray:
        params = super()._optimize_acqf(acqf, best_params)
        self.last_log_ei = float(acqf.eval_acqf_no_grad(params[None, :])[0])
        return params


@dataclass(frozen=True)
class Observation:
    """A point the GP of Eq. 6 is fitted to: candidate ``candidate`` of round ``round``, its w
    and its f(w) (Eq. 9)."""

    round: int
    candidate: int
    w: HyperParams
    f: float

    def record(self) -> dict[str, Any]:
        return {"round": self.round, "candidate": self.candidate, "w": self.w.as_dict(),
                "f": self.f}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Observation:
        return cls(record["round"], record["candidate"], HyperParams.from_dict(record["w"]),
                   record["f"])


@dataclass(frozen=True)
class Proposal:
    """w' chosen by expected improvement, with what the choice was based on: the observations
    the GP saw and the best of them (the incumbent w' of Eq. 7)."""

    w: HyperParams
    log_ei: float | None
    observations: tuple[Observation, ...]

    @property
    def incumbent(self) -> Observation:
        return min(self.observations, key=lambda o: o.f)

    def record(self) -> dict[str, Any]:
        return {"w": self.w.as_dict(), "log_ei": self.log_ei,
                "incumbent": self.incumbent.candidate, "incumbent_round": self.incumbent.round,
                "incumbent_f": self.incumbent.f,
                "observations": [o.record() for o in self.observations]}


def study_name(index: int) -> str:
    """The name of round ``index``'s study in ``pla_study.db``."""
    return f"round-{index:03d}"


def round_observations(study: optuna.Study, index: int) -> list[Observation]:
    """The finished explorations of round ``index`` (its study), by candidate index; diverged
    ones (FAIL) are left out."""
    trials = sorted((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if "candidate" in t.user_attrs), key=lambda t: t.user_attrs["candidate"])
    return [Observation(index, t.user_attrs["candidate"], HyperParams.from_dict(t.params),
                        float(t.value)) for t in trials]


def earlier_observations(storage: optuna.storages.BaseStorage, rounds: int
                         ) -> list[Observation]:
    """The explorations of rounds ``0 .. rounds - 1`` (``pla.gp_history: all``)."""
    return [o for index in range(rounds)
            for o in round_observations(optuna.load_study(study_name=study_name(index),
                                                          storage=storage), index)]


class RoundStudy:
    """The Optuna study of one round (``round-NNN`` in ``pla_study.db``).

    One trial per exploration (COMPLETE with value f(w), or FAIL when the loss diverged), tagged
    with the candidate's index, and one trial holding the proposal w' (``role=proposal``; added
    PRUNED because w' is evaluated only as a candidate of the next round).
    """

    def __init__(self, storage: optuna.storages.BaseStorage, index: int, space: SearchSpace,
                 seed: int, ei_samples: int) -> None:
        self.index, self.space = index, space
        self.sampler = ExpectedImprovementSampler(seed=seed + index, ei_samples=ei_samples)
        self.study = optuna.create_study(storage=storage, study_name=study_name(index),
                                         direction="minimize", load_if_exists=True)

    def explorations(self) -> dict[int, FrozenTrial]:
        """Finished explorations (COMPLETE or FAIL) by candidate index."""
        return {t.user_attrs["candidate"]: t for t in self.study.get_trials(deepcopy=False)
                if "candidate" in t.user_attrs
                and t.state in (TrialState.COMPLETE, TrialState.FAIL)}

    def record_exploration(self, index: int, w: HyperParams, losses: list[float] | None,
                           drop: LossDrop | None) -> None:
        attrs: dict[str, Any] = {"candidate": index, "losses": losses}
        if drop is not None:
            attrs.update(loss_first=drop.first, loss_second=drop.second)
        self.study.add_trial(create_trial(
            params=w.as_dict(), distributions=self.space.distributions(),
            value=None if drop is None else drop.value, user_attrs=attrs,
            state=TrialState.COMPLETE if drop is not None else TrialState.FAIL))

    def proposal(self) -> Proposal | None:
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
            if trial.user_attrs.get("role") == "proposal":
                return Proposal(HyperParams.from_dict(trial.params), trial.user_attrs["log_ei"],
                                tuple(Observation.from_record(o)
                                      for o in trial.user_attrs["observations"]))
        return None

    def propose(self, history: Sequence[Observation] = ()) -> Proposal:
        """Fit the GP to ``history`` (earlier rounds' observations; none in the paper) and this
        round's explorations, choose w' by expected improvement and store it in the study."""
        seen = (*history, *round_observations(self.study, self.index))
        if not seen:
            raise RuntimeError(f"PLA {self.study.study_name}: every exploration diverged "
                               "(non-finite loss); lower optim.lr or narrow the pla ranges")
        fit = optuna.create_study(direction="minimize", sampler=self.sampler)
        fit.add_trials([create_trial(params=o.w.as_dict(), value=o.f,
                                     distributions=self.space.distributions()) for o in seen])
        self.sampler.last_log_ei = None
        w = HyperParams.from_dict(fit.ask(self.space.distributions()).params)
        proposal = Proposal(w, self.sampler.last_log_ei, seen)
        self.study.add_trial(create_trial(
            params=w.as_dict(), distributions=self.space.distributions(),
            state=TrialState.PRUNED,
            user_attrs={"role": "proposal", "log_ei": proposal.log_ei,
                        "observations": [o.record() for o in seen]}))
        return proposal


def open_storage(run_dir: Path, fresh: bool = False) -> optuna.storages.RDBStorage:
    """The run's SQLite study storage (``pla_study.db``), created on first use. ``fresh`` drops
    the studies of an earlier attempt that died before its first checkpoint."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        (run_dir / STUDY_FILE).unlink(missing_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{(run_dir / STUDY_FILE).resolve()}")


# --------------------------------------------------------------------------- driver state
@dataclass
class RoundState:
    """Driver progress, saved as the checkpoint's ``extra`` (plain data only)."""

    round: int
    origin: int
    explored_epochs: int
    candidates: list[HyperParams]
    losses: list[float] = dataclasses.field(default_factory=list)
    best_loss: float | None = None
    best_epoch: int | None = None

    def to_progress(self) -> dict[str, Any]:
        return {"pla": {**dataclasses.asdict(self),
                        "candidates": [w.as_dict() for w in self.candidates]}}

    @classmethod
    def from_progress(cls, progress: dict[str, Any]) -> RoundState:
        if "pla" not in progress:
            raise RuntimeError("--resume: the checkpoint holds no PLA progress (it was not "
                               "written by train.method = pla)")
        state = dict(progress["pla"])
        state["candidates"] = [HyperParams.from_dict(w) for w in state["candidates"]]
        return cls(**state)

    def next_round(self, proposal: HyperParams, epoch: int, explore_epochs: int) -> RoundState:
        """The following round: W plus w', starting at ``epoch``."""
        return RoundState(self.round + 1, epoch,
                          self.explored_epochs + len(self.candidates) * explore_epochs,
                          [*self.candidates, proposal])


# --------------------------------------------------------------------------- the plan
class PLAPlan(Plan):
    """PLA Algorithm 1 as a training plan (see the module docstring); ``progress`` resumes a run.
    Under torchrun every process trains and computes the same f(w) (the epoch losses are averaged
    over the processes); rank 0 alone owns the study and broadcasts its decisions (which
    explorations are finished, the proposal w')."""

    def __init__(self, cfg: Config, objective: Objective, log: MetricsLog,
                 progress: dict[str, Any]) -> None:
        self.cfg, self.objective, self.log = cfg, objective, log
        self.space = SearchSpace.from_config(cfg)
        self.state = RoundState.from_progress(progress) if progress else None
        self.exploit: Stage | None = None
        self.rate = ExplorationRate()

    def hooks(self) -> list[Hook]:
        return [self.rate]

    def current(self) -> RoundState:
        """The round's state with the exploitation's losses and best epoch so far."""
        if self.exploit is None:
            return self.state
        return dataclasses.replace(self.state, losses=list(self.exploit.losses),
                                   best_loss=self.exploit.best_loss,
                                   best_epoch=self.exploit.best_epoch)

    def progress(self, trainer: Trainer) -> dict[str, Any]:
        return self.current().to_progress()

    def stages(self, trainer: Trainer) -> Iterator[Stage]:
        cfg = self.cfg
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = (open_storage(trainer.run_dir, fresh=self.state is None) if trainer.is_main
                   else None)
        if self.state is None:
            candidates = sample_candidates(self.space, cfg.pla.initial_candidates,
                                           np.random.default_rng(cfg.train.seed))
            self.state = RoundState(0, trainer.epoch, 0, candidates)
            trainer.save_checkpoint(extra=self.progress(trainer))
            self.log.write("pla_start", epoch=trainer.epoch, space=dataclasses.asdict(self.space),
                           candidates=[w.as_dict() for w in candidates],
                           settings=cfg.pla.model_dump(mode="json"))
        while (length := exploitation_length(cfg, self.state.origin, self.state.explored_epochs,
                                             len(self.state.candidates))) > 0:
            state = self.state
            study = (RoundStudy(storage, state.round, self.space, cfg.train.seed,
                                cfg.pla.ei_samples) if storage is not None else None)
            proposal = main_process_result(RoundStudy.proposal, study)
            if proposal is None:
                yield from self._explore_round(trainer, study)
                proposal = main_process_result(self._propose, study, storage)
                self.log.write("pla_proposal", epoch=state.origin, round=state.round,
                               **proposal.record())
            yield self._exploit_stage(trainer, proposal.w, length)
            self.state, self.exploit = self.current(), None
            if cfg.pla.continue_from == "best" and self.state.best_epoch != trainer.epoch:
                _continue_from_best(trainer)
            record = (_round_record(self.state, study, proposal, trainer.epoch)
                      if study is not None else None)
            self.state = self.state.next_round(proposal.w, trainer.epoch, cfg.pla.explore_epochs)
            trainer.save_checkpoint(extra=self.progress(trainer))
            if record is not None:  # rank 0, which alone holds the study
                self.log.write("pla_round", **record)

    def _propose(self, study: RoundStudy, storage: optuna.storages.BaseStorage) -> Proposal:
        """w' from the GP fitted to this round's explorations, plus every earlier round's with
        ``pla.gp_history: all`` (not in the paper)."""
        history = (earlier_observations(storage, self.state.round)
                   if self.cfg.pla.gp_history == "all" else [])
        return study.propose(history)

    def _schedule_start(self) -> int:
        """``pla.schedule_scope``: the round's first epoch (round) or 0 (global)."""
        return self.state.origin if self.cfg.pla.schedule_scope == "round" else 0

    def _explore_round(self, trainer: Trainer, study: RoundStudy | None) -> Iterator[Stage]:
        """Explore every candidate not yet explored in this round, restoring after each
        (``study`` is None on the processes other than rank 0, which only train)."""
        state, pla = self.state, self.cfg.pla
        if trainer.epoch != state.origin:
            raise RuntimeError(f"PLA round {state.round}: exploration must start at the round's "
                               f"epoch {state.origin}, but the trainer is at {trainer.epoch}")
        finished = main_process_result(lambda: set(study.explorations()))
        snapshot = trainer.snapshot()
        half = pla.explore_epochs // 2
        for index, w in enumerate(state.candidates):
            if index in finished:
                continue
            self.rate.begin(state.origin - self._schedule_start())
            stage = Stage(w.objective(self.objective), state.origin + pla.explore_epochs,
                          self._schedule_start(), kept=False,
                          fields=lambda epoch, index=index: {
                              "round": state.round,
                              "candidate": f"{index + 1}/{len(state.candidates)}"})
            yield stage
            trainer.restore(snapshot)
            losses = None if stage.diverged else stage.losses
            drop = None if losses is None else loss_drop_objective(losses, pla.expected_drop)
            if study is not None:
                study.record_exploration(index, w, losses, drop)
            self.log.write("pla_explore", epoch=state.origin, round=state.round,
                           candidate=index, w=w.as_dict(), losses=losses,
                           f=None if drop is None else drop.value, lrs=list(self.rate.lrs),
                           half_epochs=half, half_batches=half * len(trainer.sampler),
                           loss_first=None if drop is None else drop.first,
                           loss_second=None if drop is None else drop.second)

    def _exploit_stage(self, trainer: Trainer, w: HyperParams, length: int) -> Stage:
        """Algorithm 1 exploitation with w'; the lowest-loss epoch goes to ``best.pt``."""
        state = self.state
        if trainer.epoch != state.origin + len(state.losses):
            raise RuntimeError(f"PLA round {state.round}: the checkpoint is at epoch "
                               f"{trainer.epoch} but the progress record has "
                               f"{len(state.losses)} exploitation epochs from epoch "
                               f"{state.origin}")
        self.exploit = Stage(w.objective(self.objective), state.origin + length,
                             self._schedule_start(), fields=lambda epoch: {"round": state.round},
                             best_info={"round": state.round, "w": w.as_dict()},
                             losses=list(state.losses), best_loss=state.best_loss,
                             best_epoch=state.best_epoch)
        return self.exploit


def _continue_from_best(trainer: Trainer) -> None:
    """Take weights and optimiser moments from ``best.pt``; the epoch counter, sampler and RNGs
    carry on from the last epoch. Under torchrun the collective waits until rank 0 has written
    the file."""
    main_process_result(lambda: None)
    best = load_checkpoint(trainer.checkpoint_path.with_name(BEST_CHECKPOINT),
                           map_location=trainer.device)["trainer"]
    trainer.load_state_dict({**trainer.state_dict(), "model": best["model"],
                             "optimizer": best["optimizer"]})


def _round_record(state: RoundState, study: RoundStudy, proposal: Proposal,
                  epoch: int) -> dict[str, Any]:
    """The ``pla_round`` log record: candidates with f(w), the EI choice and the exploitation."""
    explored = study.explorations()
    candidates = [{"index": index, "w": w.as_dict(), "f": explored[index].value,
                   "loss_first": explored[index].user_attrs.get("loss_first"),
                   "loss_second": explored[index].user_attrs.get("loss_second")}
                  for index, w in enumerate(state.candidates)]
    return {"epoch": epoch, "round": state.round, "origin": state.origin,
            "candidates": candidates, "proposal": proposal.record(),
            "exploit_losses": list(state.losses), "best_loss": state.best_loss,
            "best_epoch": state.best_epoch}
