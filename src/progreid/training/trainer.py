"""The training loop: one object that owns model, optimiser, sampler and RNG state.

:meth:`Trainer.fit` is the only epoch loop. A :class:`Plan` says what to train as a sequence of
:class:`Stage` s (an objective, an end epoch and where the learning-rate schedule starts: the
standard run is one stage, TRC two phases, PLA rounds of explorations and an exploitation);
:class:`Hook` s do everything around the epochs (log, evaluate, checkpoint). For each epoch the
loop sets learning rate and Adam beta1, runs forward, backward and step over the PK batches,
checks the loss is finite, then calls the hooks. :meth:`Trainer.snapshot` and
:meth:`Trainer.restore` copy the complete training state in memory (PLA's exploration), and
:meth:`Trainer.save_checkpoint` / :meth:`Trainer.load_checkpoint` persist it (``--resume``).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from progreid.config import Config
from progreid.data import ReIDDataset
from progreid.data.cache import build_cached_train_loader
from progreid.data.loading import build_train_loader
from progreid.data.sampler import PKSampler
from progreid.data.transforms import BatchAugment
from progreid.errors import NonFiniteLossError
from progreid.models import ModelOutput, build_model
from progreid.training.objective import Objective
from progreid.training.schedules import adam_beta1, learning_rate
from progreid.utils.checkpoint import (
    CheckpointError,
    check_same_architecture,
    load_checkpoint,
    require_keys,
    save_checkpoint,
)
from progreid.utils.device import cpu_has_native_bf16, resolve_device, use_bf16_autocast
from progreid.utils.distributed import (
    SampleLog,
    gather_with_grad,
    local_main_first,
    loss_scale,
    wrap_model,
)
from progreid.utils.progress import progress


@dataclass
class EpochStats:
    """Mean of each loss term over one epoch, with its duration and image count."""

    epoch: int
    terms: dict[str, float]
    lr: float
    seconds: float
    images: int

    @property
    def loss(self) -> float:
        return self.terms["loss"]


@dataclass
class Stage:
    """Epochs trained with one objective, until the trainer's epoch counter reaches ``end``.

    The learning-rate schedule and the beta1 switch are functions of ``epoch - schedule_start``
    (TRC restarts them per phase, PLA per round). ``fields(epoch)`` names the stage in the
    records of its epochs (``round``, ``phase``). A stage that is not ``kept`` (PLA's
    exploration, undone afterwards) calls no hook, and a non-finite loss ends it with
    ``diverged`` set instead of stopping the run. ``best_info`` (None: not tracked) asks for
    the stage's lowest-loss epoch in ``checkpoints/best.pt``. The loop appends each epoch's
    mean loss to ``losses`` and the best hook updates ``best_loss`` / ``best_epoch``; a plan
    resuming a stage half-way passes what its checkpoint recorded of them.
    """

    objective: Objective
    end: int
    schedule_start: int = 0
    fields: Callable[[int], dict[str, Any]] = lambda epoch: {}
    kept: bool = True
    best_info: dict[str, Any] | None = None
    losses: list[float] = field(default_factory=list)
    best_loss: float | None = None
    best_epoch: int | None = None
    diverged: bool = False


class Hook:
    """Something done around the epochs of :meth:`Trainer.fit` (a no-op here). ``after_step``
    sees each batch's model output (detached use only) after the optimiser step; a hook with
    ``every_stage`` also runs in stages that are not kept (PLA's explorations)."""

    every_stage = False

    def before_epoch(self, trainer: Trainer, stage: Stage) -> None:
        pass

    def after_step(self, trainer: Trainer, output: ModelOutput, labels: torch.Tensor) -> None:
        pass

    def after_epoch(self, trainer: Trainer, stage: Stage, stats: EpochStats) -> None:
        pass


class Plan:
    """A training method: the :class:`Stage` s to train, what a checkpoint records of the
    progress through them, and any hooks of its own (run after the epoch record is logged and
    before evaluation and checkpoints)."""

    def stages(self, trainer: Trainer) -> Iterator[Stage]:
        raise NotImplementedError

    def progress(self, trainer: Trainer) -> dict[str, Any]:
        return {}

    def hooks(self) -> list[Hook]:
        return []


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def augment_seed(seed: int, rank: int, epoch: int) -> int:
    """Seed of one process's augmentation in one epoch: a function of (seed, rank, epoch) only,
    like the sampler's batches, so a resumed run (every process of it) continues exactly."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])


def parameter_groups(model: nn.Module, backbone_lr_mult: float) -> list[dict[str, Any]]:
    """Trainable parameters in groups with an ``lr_mult``: the pretrained backbone's
    (``backbone.*``, or MGN's ``trunk``/``branches``) at ``backbone_lr_mult``, the new heads at 1.
    One group when the multiplier is 1."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if backbone_lr_mult == 1.0:
        return [{"params": [p for _, p in trainable], "lr_mult": 1.0}]
    in_backbone = ("backbone.", "trunk.", "branches.")
    backbone = [p for name, p in trainable if name.startswith(in_backbone)]
    heads = [p for name, p in trainable if not name.startswith(in_backbone)]
    return [{"params": backbone, "lr_mult": backbone_lr_mult}, {"params": heads, "lr_mult": 1.0}]


def build_optimizer(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    """Adam (PLA, TRC) or SGD over all trainable parameters, grouped by ``lr_mult``."""
    params = parameter_groups(model, cfg.optim.backbone_lr_mult)
    opt = cfg.optim
    if opt.name == "adam":
        fused = opt.fused if opt.fused is not None else device.type == "cuda"
        return torch.optim.Adam(params, lr=opt.lr, betas=opt.betas, eps=opt.eps,
                                weight_decay=opt.weight_decay, fused=fused or None)
    return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum,
                           weight_decay=opt.weight_decay, nesterov=opt.momentum > 0)


class Trainer:
    """Trains a ReID model on the training split of ``dataset`` as ``cfg`` describes."""

    def __init__(self, cfg: Config, dataset: ReIDDataset, run_dir: str | Path,
                 rank: int = 0, world_size: int = 1) -> None:
        self.cfg = cfg
        self.dataset = dataset
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.device = resolve_device(cfg.train.device)
        cuda = self.device.type == "cuda"
        self.amp = use_bf16_autocast(cfg.train.amp, self.device)
        # channels_last is faster on the CPU too (docs/performance.md), so it is the default.
        self.channels_last = cfg.train.channels_last is not False
        if cuda:  # fixed input size: let cuDNN pick the fastest convolution algorithms
            torch.backends.cudnn.benchmark = True
        seed_everything(cfg.train.seed)
        self.model = build_model(num_classes=dataset.num_train_pids, **cfg.model.model_dump())
        if world_size > 1 and cfg.train.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, cfg, self.device)
        self.sampler = PKSampler([s.pid for s in dataset.train], cfg.data.p, cfg.data.k,
                                 num_batches=cfg.data.batches_per_epoch, seed=cfg.train.seed,
                                 rank=rank, world_size=world_size,
                                 replacement=cfg.data.replacement)
        self.loader = self._build_loader()
        mean, std = self.model.normalization
        self.augment = BatchAugment(enlarge=cfg.data.enlarge, flip_p=cfg.data.flip_p,
                                    erase_p=cfg.data.erase_p, mean=mean, std=std)
        self.generator = torch.Generator(device=self.device)
        forward = wrap_model(self.model, self.device) if world_size > 1 else self.model
        self.forward_model: nn.Module = torch.compile(forward) if cfg.train.compile else forward
        self.sample_log = SampleLog(rank)
        self.epoch = 0
        # Epoch at which the schedule (re)starts: the current stage's; not part of the state.
        self.schedule_start = 0

    def _build_loader(self) -> Iterable[tuple[torch.Tensor, ...]]:
        """Decoding DataLoader, or batches from the decoded-image cache (``data.cache``), which
        each machine's first process builds before the others open it."""
        data = self.cfg.data
        if not data.cache:
            return build_train_loader(self.dataset.train, data.height, data.width, self.sampler,
                                      data.workers)
        with local_main_first():
            return build_cached_train_loader(self.dataset.train, data.height, data.width,
                                             self.sampler, data.workers, self.device)

    # ------------------------------------------------------------------ the loop
    def fit(self, plan: Plan, hooks: Sequence[Hook]) -> None:
        """Train every stage of ``plan``, calling ``hooks`` in their order after each epoch."""
        for stage in plan.stages(self):
            self.run_stage(stage, hooks)

    def run_stage(self, stage: Stage, hooks: Sequence[Hook]) -> None:
        """Train from the current epoch to ``stage.end`` (see :class:`Stage`)."""
        self.schedule_start = stage.schedule_start
        hooks = [hook for hook in hooks if stage.kept or hook.every_stage]
        while self.epoch < stage.end:
            for hook in hooks:
                hook.before_epoch(self, stage)
            try:
                stats = self.train_epoch(stage.objective, hooks)
            except NonFiniteLossError:
                if stage.kept:
                    raise
                stage.diverged = True
                return
            stage.losses.append(stats.loss)
            for hook in hooks:
                hook.after_epoch(self, stage, stats)

    # ------------------------------------------------------------------ one epoch
    def apply_schedule(self) -> float:
        """Set learning rate (and Adam beta1) for the epoch about to run; return the heads' rate
        (each parameter group gets it times its ``lr_mult``), at ``epoch - schedule_start``."""
        epoch = self.epoch - self.schedule_start
        lr = learning_rate(epoch, self.cfg.optim.lr, self.cfg.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)  # absent in older checkpoints
            if "betas" in group:
                beta1 = adam_beta1(epoch, self.cfg.optim.betas[0], self.cfg.schedule)
                group["betas"] = (beta1, group["betas"][1])
        return lr

    def fast_paths(self) -> dict[str, bool]:
        """The resolved speed settings, for the run's ``environment.json``."""
        return {"channels_last": self.channels_last, "bf16_autocast": self.amp,
                "compile": self.cfg.train.compile, "cpu_native_bf16": cpu_has_native_bf16()}

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.amp)

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Augmented float images and labels of one epoch, on the training device."""
        self.sampler.set_epoch(self.epoch)
        self.generator.manual_seed(augment_seed(self.cfg.train.seed, self.rank, self.epoch))
        for step, (images, pids, _, indices) in enumerate(self.loader):
            self.sample_log.write(self.epoch, step, indices)
            images = images.to(self.device, non_blocking=True)
            pids = pids.to(self.device, non_blocking=True)
            images = self.augment(images, self.generator)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, pids

    def train_epoch(self, objective: Objective, hooks: Sequence[Hook] = ()) -> EpochStats:
        """Run one epoch over the PK sampler with ``objective``; return mean loss terms."""
        self.model.train()
        lr = self.apply_schedule()
        start = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        steps = images_seen = 0
        bar = progress(total=len(self.sampler), desc=f"epoch {self.epoch + 1}", unit="batch",
                       enabled=self.cfg.train.progress and self.is_main)
        for images, pids in self.batches():
            with self.autocast():
                output = self.forward_model(images)
            output, pids = gather_batch(output, pids)
            loss, terms = objective(output, pids)
            self.optimizer.zero_grad(set_to_none=True)
            (loss * loss_scale()).backward()
            self.optimizer.step()
            for hook in hooks:
                hook.after_step(self, output, pids)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value
            steps += 1
            images_seen += images.shape[0]
            if not bar.disable and (steps % 10 == 1 or steps == len(self.sampler)):
                speed = images_seen / (time.perf_counter() - start)
                bar.set_postfix(epoch_means(sums, steps) | {"lr": lr, "img/s": round(speed)},
                                refresh=False)
            bar.update()
        bar.close()
        means = epoch_means(sums, steps)
        if not all(np.isfinite(v) for v in means.values()):
            kept = ("its last checkpoint is kept" if self.checkpoint_path.exists()
                    else "no checkpoint had been written yet")
            raise NonFiniteLossError(
                f"loss became {means.get('loss')} in epoch {self.epoch + 1} (terms {means}); "
                f"training stopped and {kept}. Lower optim.lr or check the data.")
        self.epoch += 1
        return EpochStats(self.epoch, means, lr, time.perf_counter() - start,
                          images_seen * self.world_size)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit: weights, optimiser, sampler, RNGs."""
        np_state = np.random.get_state()
        state = {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                          *np_state[2:]],
                "python": random.getstate(),
            },
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def snapshot(self) -> dict[str, Any]:
        """An in-memory deep copy of the full training state (PLA Algorithm 1 exploration)."""
        return copy.deepcopy(self.state_dict())

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Return to a :meth:`snapshot` exactly: weights, optimiser moments, sampler and RNGs."""
        self.load_state_dict(copy.deepcopy(snapshot))

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def architecture(self) -> dict[str, Any]:
        """What the shapes of the weights depend on: the model section and the class count."""
        return {**self.cfg.model.model_dump(exclude={"pretrained"}),
                "num_classes": self.dataset.num_train_pids}

    def save_checkpoint(self, extra: dict[str, Any] | None = None,
                        path: Path | None = None) -> None:
        """Write the training state atomically (rank 0 only); ``extra`` holds driver progress."""
        if self.is_main:
            save_checkpoint(path or self.checkpoint_path,
                            {"trainer": self.state_dict(), "extra": extra or {},
                             "architecture": self.architecture()})

    def load_checkpoint(self, path: Path | None = None) -> dict[str, Any]:
        """Restore from a checkpoint and return the plan's ``extra`` progress record; one of
        another model (architecture, width, number of classes) is refused, before anything loads,
        with a :class:`CheckpointError` naming the file and each difference."""
        path = path or self.checkpoint_path
        payload = load_checkpoint(path, map_location=self.device)
        require_keys(payload, ("trainer", "architecture"), path, "progreid training checkpoint")
        check_same_architecture(payload["architecture"], self.architecture(), path)
        try:
            self.load_state_dict(payload["trainer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: the training state does not fit this trainer "
                                  f"({type(exc).__name__}: {exc})") from exc
        return payload.get("extra", {})


def epoch_means(sums: dict[str, torch.Tensor], steps: int) -> dict[str, float]:
    """The mean of each loss term over ``steps`` batches."""
    return {name: float(total) / max(steps, 1) for name, total in sums.items()}


def gather_batch(output: ModelOutput, labels: torch.Tensor) -> tuple[ModelOutput, torch.Tensor]:
    """The model output and labels of the global batch of all processes (under torchrun), so
    that every loss sees the batch of one process with ``P * world_size`` identities."""
    return ModelOutput([gather_with_grad(t) for t in output.logits],
                       [gather_with_grad(t) for t in output.metric_features],
                       gather_with_grad(output.embedding)), gather_with_grad(labels)

