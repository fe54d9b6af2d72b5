"""What ``progreid train`` checks before it decodes an image or writes a run file.

:func:`check_before_data` runs first, on the config and this machine alone: the device, the
optional packages the recipe needs, the pretrained weights, ``eval.pca_dim`` against the
embedding width, and a probe write (and room for a checkpoint) where the run folder and the
decoded-image cache go. :func:`check_file_list` runs once the dataset's file list is read:
``eval.pca_dim`` against the number of training images. Each failure is one
:class:`ConfigError` naming the setting and the fix.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from progreid.config import Config
from progreid.data import ReIDDataset
from progreid.data.cache import CACHE_DIR_ENV, default_cache_dir
from progreid.errors import ConfigError
from progreid.models import build_model
from progreid.models.pretrained import PretrainedWeightsError, check_pretrained
from progreid.utils.device import resolve_device
from progreid.utils.io import probe_writable

#: The optional packages a setting needs: (the setting, whether the config has it, the modules,
#: the progreid extra that installs them, the other choice).
EXTRAS: tuple[tuple[str, Callable[[Config], bool], tuple[str, ...], str, str], ...] = (
    ("train.method = 'pla'", lambda cfg: cfg.train.method == "pla", ("optuna", "scipy"), "pla",
     "choose another train.method"),
    ("train.tensorboard = true", lambda cfg: cfg.train.tensorboard, ("tensorboard",),
     "tensorboard", "set train.tensorboard=false"),
    ("eval.cpu_runtime = 'onnxruntime'", lambda cfg: cfg.eval.cpu_runtime == "onnxruntime",
     ("onnxruntime", "onnxscript"), "export", "set eval.cpu_runtime=torch"),
)
OUTPUT_SETTING = "train.output_dir = {}"
OUTPUT_FIX = "choose another folder: --set train.output_dir=DIR"


def check_before_data(cfg: Config) -> None:
    """Everything the config and this machine tell before the dataset is read."""
    resolve_device(cfg.train.device, "train.device")
    check_extras(cfg)
    if cfg.model.pretrained is not None:
        try:
            check_pretrained(cfg.model.pretrained, cfg.model.backbone)
        except PretrainedWeightsError as exc:
            raise ConfigError(f"model.pretrained = {cfg.model.pretrained!r}: {exc} (or set "
                              "model.pretrained=null to start from random weights)") from exc
    output = probe_writable(Path(cfg.train.output_dir), OUTPUT_SETTING.format(cfg.train.output_dir),
                   OUTPUT_FIX)
    if cfg.data.cache:
        cache = default_cache_dir()
        probe_writable(cache, f"data.cache = true: the decoded-image cache {cache}",
              f"set {CACHE_DIR_ENV} to a writable folder, or data.cache=false")
    model = meta_model(cfg)
    if cfg.eval.pca_dim is not None and cfg.eval.pca_dim > model.embedding_dim:
        raise ConfigError(f"eval.pca_dim = {cfg.eval.pca_dim} exceeds the embedding width "
                          f"{model.embedding_dim} of model {cfg.model.name!r} on "
                          f"{cfg.model.backbone} (width {cfg.model.width}); set eval.pca_dim to "
                          f"at most {model.embedding_dim}, or null for no PCA")
    check_room(cfg, output, checkpoint_bytes(cfg, model))


def check_file_list(cfg: Config, dataset: ReIDDataset) -> None:
    """``eval.pca_dim`` against the training images (PCA fits one feature per image), checked
    as soon as the file list is read, not after training."""
    count = len(dataset.train)
    if cfg.eval.pca_dim is not None and cfg.eval.pca_dim > count:
        raise ConfigError(f"eval.pca_dim = {cfg.eval.pca_dim} exceeds the {count} training "
                          f"images of {cfg.data.root} (PCA is fitted on their features); set "
                          f"eval.pca_dim to at most {count}, or null for no PCA")


def check_extras(cfg: Config) -> None:
    """Each optional package the recipe needs (:data:`EXTRAS`) is installed."""
    for setting, needed, modules, extra, alternative in EXTRAS:
        missing = [name for name in modules
                   if needed(cfg) and importlib.util.find_spec(name) is None]
        if missing:
            raise ConfigError(f"{setting} needs {' and '.join(missing)}: pip install "
                              f"'progreid[{extra}]', or {alternative}")


def meta_model(cfg: Config) -> nn.Module:
    """The configured network built on the meta device: its shapes without memory or weights."""
    with torch.device("meta"):
        return build_model(num_classes=1, **{**cfg.model.model_dump(), "pretrained": None})


def checkpoint_bytes(cfg: Config, model: nn.Module) -> int:
    """About the size of one training checkpoint: float32 weights and buffers, and the
    optimizer's state per weight (Adam: two moments; SGD: the momentum buffer)."""
    slots = 2 if cfg.optim.name == "adam" else int(cfg.optim.momentum > 0)
    params = sum(p.numel() for p in model.parameters())
    return 4 * (sum(t.numel() for t in model.state_dict().values()) + slots * params)


def check_room(cfg: Config, folder: Path, need: int) -> None:
    """The run folder's file system has ``need`` bytes free, the size of one checkpoint."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ConfigError(f"{OUTPUT_SETTING.format(cfg.train.output_dir)}: {folder} has "
                          f"{free / 2**20:.1f} MiB free, but a checkpoint of this model needs "
                          f"about {need / 2**20:.1f} MiB (weights and optimizer state); free some "
                          f"space there or {OUTPUT_FIX}")
