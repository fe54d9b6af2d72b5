"""`progreid train`: set up the run folder, train with the configured method, evaluate, save.

A run folder holds ``config.yaml`` (the resolved config), ``environment.json`` (versions),
``metrics.jsonl`` (the log), ``checkpoints/last.pt`` (for ``--resume``), ``model.pt`` (the
deployable bundle, with the match threshold the final evaluation calibrated), ``results.json``
(final metrics, ``match_threshold`` among them) and, for a dataset whose split was drawn (one
folder per identity), ``split.json``, which ``--resume``, ``evaluate`` and ``report`` reuse.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

import progreid
from progreid.config import Config, ConfigError, save_config
from progreid.data import DatasetError, ReIDDataset, build_run_dataset
from progreid.data.identities import save_split
from progreid.data.loading import loader_workers
from progreid.data.validation import check_against_dataset, validate_dataset
from progreid.deploy.bundle import BUNDLE_NAME, save_bundle
from progreid.evaluation.features import Embedder
from progreid.evaluation.pca import Projection, fit_pca
from progreid.evaluation.pipeline import evaluate_model
from progreid.evaluation.threshold import MatchThreshold
from progreid.training.hooks import evaluate_trainer, training_hooks
from progreid.training.objective import Objective
from progreid.training.preflight import check_before_data, check_file_list
from progreid.training.tensorboard import TensorBoardLog
from progreid.training.trainer import Plan, Stage, Trainer
from progreid.training.trc import TRCPlan
from progreid.utils.device import resolve_device
from progreid.utils.io import atomic_write_json, remove_stale_temporaries
from progreid.utils.metrics_log import METRICS_NAME, MetricsLog


class StandardPlan(Plan):
    """Plain training: ``train.epochs`` epochs with one fixed objective."""

    def __init__(self, cfg: Config, objective: Objective, log: MetricsLog,
                 progress: dict[str, Any]) -> None:
        self.stage = Stage(objective, cfg.train.epochs)

    def stages(self, trainer: Trainer) -> Iterator[Stage]:
        yield self.stage


def plan_class(method: str) -> type[Plan]:
    """The plan of a ``train.method``: standard, PLA Algorithm 1, or TRC phases. PLA's module
    is imported only for a PLA run: it needs optuna (the ``pla`` extra, checked beforehand)."""
    if method == "pla":
        from progreid.training.pla import PLAPlan

        return PLAPlan
    return {"standard": StandardPlan, "trc": TRCPlan}[method]


def load_dataset(cfg: Config, run_dir: Path | None = None) -> ReIDDataset:
    """The configured dataset, with the split saved in ``run_dir`` when given and there is one;
    a folder the system refuses to list is a :class:`DatasetError`."""
    try:
        return build_run_dataset(cfg.data.dataset, cfg.data.root, cfg.data.options, run_dir)
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {cfg.data.dataset} at {cfg.data.root}: {exc}; "
                           "check that the folder exists and is readable") from exc


def fit_training_projection(trainer: Trainer) -> Projection | None:
    """PLA Sec. 4.2: PCA to ``eval.pca_dim`` dimensions fitted on the embeddings of the training
    images, extracted with the evaluation's test-time augmentation; None without ``pca_dim``."""
    cfg = trainer.cfg
    if cfg.eval.pca_dim is None:
        return None
    train = Embedder.configured(trainer.model, cfg).extract(
        trainer.dataset.train, trainer.device, cfg.eval.batch_size, cfg.data.workers)
    return fit_pca(train.features, cfg.eval.pca_dim)


def evaluate_untrained(cfg: Config) -> dict[str, float]:
    """Metrics of the freshly initialised network (same seed as training): the 'before' row."""

    from progreid.models import build_model
    from progreid.training.trainer import seed_everything

    dataset = load_dataset(cfg)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device, "train.device")
    model = build_model(num_classes=dataset.num_train_pids, **cfg.model.model_dump()).to(device)
    return evaluate_model(Embedder.configured(model, cfg), dataset, cfg.eval, device,
                          cfg.data.workers)


def environment_record() -> dict[str, Any]:
    """Versions of Python, torch, numpy and progreid, the torch thread count (CPU results are
    bit-reproducible only at the same count), and the git revision when available."""
    record: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                              "numpy": np.__version__, "progreid": progreid.__version__,
                              "platform": platform.platform(),
                              "torch_threads": torch.get_num_threads(),
                              "usable_cores": len(os.sched_getaffinity(0)),
                              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                              "cuda": torch.version.cuda if torch.cuda.is_available() else None}
    try:
        record["git_revision"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        record["git_revision"] = None
    return record


def check_run_dir(cfg: Config, resume: bool) -> Path:
    """The run folder; refuse to overwrite a finished or started run unless resuming."""
    run_dir = Path(cfg.train.output_dir)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if resume and not checkpoint.exists():
        raise ConfigError(f"--resume: no checkpoint at {checkpoint}; start without --resume")
    if not resume and (checkpoint.exists() or (run_dir / BUNDLE_NAME).exists()):
        raise ConfigError(f"train.output_dir = {run_dir} already holds a run; pass --resume to "
                          "continue it or choose another train.output_dir")
    return run_dir


def write_run_files(cfg: Config, run_dir: Path, resume: bool,
                    fast_paths: dict[str, bool] | None = None) -> None:
    """Create the run folder with its config and environment record (with the trainer's
    resolved ``fast_paths``). A fresh start drops the log of an earlier attempt that died before
    its first checkpoint."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        (run_dir / METRICS_NAME).unlink(missing_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    atomic_write_json(run_dir / "environment.json",
                      environment_record() | (fast_paths or {})
                      | {"loader_workers": loader_workers(cfg.data.workers)})


def train(cfg: Config, resume: bool = False, rank: int = 0,
          world_size: int = 1) -> dict[str, float]:
    """Train as configured and return the final evaluation metrics (percent).

    The config and this machine (:mod:`~progreid.training.preflight`), the dataset's file list
    and images (:func:`validate_dataset`) and, on ``resume``, the checkpoint are all checked
    before the run folder is written, so a run that cannot start leaves no partial run folder.
    """
    check_before_data(cfg)
    objective = Objective.from_config(cfg.loss)
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    run_dir = check_run_dir(cfg, resume)
    dataset = load_dataset(cfg, run_dir if resume else None)
    check_file_list(cfg, dataset)
    dataset, scan = validate_dataset(dataset, cfg.data)
    check_against_dataset(cfg.data, dataset, world_size)
    trainer = Trainer(cfg, dataset, run_dir, rank=rank, world_size=world_size)
    progress = trainer.load_checkpoint() if resume else {}
    if trainer.is_main:
        remove_stale_temporaries(run_dir, run_dir / "checkpoints")  # left by a killed write
        write_run_files(cfg, run_dir, resume, trainer.fast_paths())
        save_split(dataset, run_dir)
    log = (TensorBoardLog if cfg.train.tensorboard else MetricsLog)(run_dir / METRICS_NAME,
                                                                    enabled=trainer.is_main)
    if resume:
        log.truncate_after(trainer.epoch)
        log.write("resume", epoch=trainer.epoch)
    else:
        log.write("start", epoch=0, method=cfg.train.method,
                  train_images=len(dataset.train), train_ids=dataset.num_train_pids)
    log.write("data_check", epoch=trainer.epoch, **scan.log_fields())
    plan = plan_class(cfg.train.method)(cfg, objective, log, progress)
    trainer.fit(plan, training_hooks(plan, log))
    projection = fit_training_projection(trainer)
    metrics = evaluate_trainer(trainer, projection)
    if trainer.is_main:
        threshold = metrics["match_threshold"]
        save_bundle(run_dir / BUNDLE_NAME, cfg, trainer.model, dataset.num_train_pids,
                    projection, MatchThreshold.from_dict(threshold) if threshold else None)
        log.write("eval", epoch=trainer.epoch, final=True, **metrics)
        atomic_write_json(run_dir / "results.json", {"epoch": trainer.epoch, **metrics})
    return metrics
