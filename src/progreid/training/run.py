"""`progreid train`: set up the run folder, train with the configured method, evaluate, save.

A run folder holds ``config.yaml`` (the resolved config), ``environment.json`` (versions),
``metrics.jsonl`` (the log), ``checkpoints/last.pt`` (for ``--resume``), ``model.pt`` (the
deployable bundle) and ``results.json`` (final metrics).
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import progreid
from progreid.bundle import BUNDLE_NAME, save_bundle
from progreid.config import Config, ConfigError, save_config
from progreid.data import ReIDDataset, build_dataset
from progreid.evaluation.pipeline import evaluate_model
from progreid.training.metrics_log import MetricsLog
from progreid.training.objective import Objective
from progreid.training.trainer import Trainer
from progreid.utils.io import atomic_write_json

Driver = Callable[[Trainer, Objective, MetricsLog, dict[str, Any]], None]


def run_standard(trainer: Trainer, objective: Objective, log: MetricsLog,
                 progress: dict[str, Any]) -> None:
    """Plain training: ``train.epochs`` epochs with one fixed objective."""
    cfg = trainer.cfg.train
    while trainer.epoch < cfg.epochs:
        stats = trainer.train_epoch(objective)
        log.write("epoch", epoch=stats.epoch, lr=stats.lr, seconds=round(stats.seconds, 3),
                  images_per_second=round(stats.images / max(stats.seconds, 1e-9), 2),
                  **stats.terms)
        if trainer.epoch % cfg.checkpoint_every == 0 or trainer.epoch == cfg.epochs:
            trainer.save_checkpoint()
        if cfg.eval_every and trainer.epoch % cfg.eval_every == 0:
            log.write("eval", epoch=trainer.epoch, **evaluate_trainer(trainer))


def select_driver(method: str) -> Driver:
    """The training procedure of ``train.method``: standard, PLA Algorithm 1, or TRC phases."""
    if method == "pla":
        from progreid.training.pla import run_pla

        return run_pla
    if method == "trc":
        from progreid.training.trc import run_trc

        return run_trc
    return run_standard


def load_dataset(cfg: Config) -> ReIDDataset:
    return build_dataset(cfg.data.dataset, cfg.data.root, **cfg.data.options)


def evaluate_trainer(trainer: Trainer, projector=None) -> dict[str, float]:
    cfg = trainer.cfg
    return evaluate_model(trainer.model, trainer.dataset, cfg.eval, cfg.data.height,
                          cfg.data.width, trainer.device, cfg.data.workers, projector)


def evaluate_untrained(cfg: Config) -> dict[str, float]:
    """Metrics of the freshly initialised network (same seed as training): the 'before' row."""
    from dataclasses import asdict

    from progreid.models import build_model
    from progreid.training.trainer import resolve_device, seed_everything

    dataset = load_dataset(cfg)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    model = build_model(num_classes=dataset.num_train_pids, **asdict(cfg.model)).to(device)
    return evaluate_model(model, dataset, cfg.eval, cfg.data.height, cfg.data.width, device,
                          cfg.data.workers)


def environment_record() -> dict[str, Any]:
    """Versions of Python, torch, numpy and progreid, and the git revision when available."""
    record: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                              "numpy": np.__version__, "progreid": progreid.__version__,
                              "platform": platform.platform(),
                              "cuda": torch.version.cuda if torch.cuda.is_available() else None}
    try:
        record["git_revision"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        record["git_revision"] = None
    return record


def prepare_run_dir(cfg: Config, resume: bool, is_main: bool = True) -> Path:
    """Create the run folder; refuse to overwrite a finished or started run unless resuming."""
    run_dir = Path(cfg.train.output_dir)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if resume and not checkpoint.exists():
        raise ConfigError(f"--resume: no checkpoint at {checkpoint}; start without --resume")
    if not resume and (checkpoint.exists() or (run_dir / BUNDLE_NAME).exists()):
        raise ConfigError(f"train.output_dir = {run_dir} already holds a run; pass --resume to "
                          "continue it or choose another train.output_dir")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        atomic_write_json(run_dir / "environment.json", environment_record())
    return run_dir


def train(cfg: Config, resume: bool = False, rank: int = 0,
          world_size: int = 1) -> dict[str, float]:
    """Train as configured and return the final evaluation metrics (percent)."""
    objective = Objective.from_config(cfg.loss)
    objective.validate()
    driver = select_driver(cfg.train.method)
    run_dir = prepare_run_dir(cfg, resume, rank == 0)
    dataset = load_dataset(cfg)
    trainer = Trainer(cfg, dataset, run_dir, rank=rank, world_size=world_size)
    log = MetricsLog(run_dir / "metrics.jsonl", enabled=trainer.is_main)
    progress: dict[str, Any] = {}
    if resume:
        progress = trainer.load_checkpoint()
        log.truncate_after(trainer.epoch)
        log.write("resume", epoch=trainer.epoch)
    else:
        log.write("start", epoch=0, method=cfg.train.method,
                  train_images=len(dataset.train), train_ids=dataset.num_train_pids)
    driver(trainer, objective, log, progress)
    metrics = evaluate_trainer(trainer)
    if trainer.is_main:
        save_bundle(run_dir / BUNDLE_NAME, cfg, trainer.model, dataset.num_train_pids)
        log.write("eval", epoch=trainer.epoch, final=True, **metrics)
        atomic_write_json(run_dir / "results.json", {"epoch": trainer.epoch, **metrics})
    return metrics
