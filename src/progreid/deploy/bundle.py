"""The deployable model of a run (``model.pt``): config, weights and optional PCA projection.

:meth:`Bundle.embedder` is how every user of a trained model embeds images: exactly as the
run's evaluation did (normalisation, network, test-time augmentation, PCA).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from progreid.config import Config, config_from_dict, config_to_dict
from progreid.evaluation.features import Embedder
from progreid.evaluation.pca import Projection
from progreid.models import build_model
from progreid.utils.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_weights,
    require_keys,
    save_checkpoint,
)

BUNDLE_NAME = "model.pt"


@dataclass
class Bundle:
    model: nn.Module
    config: Config
    num_classes: int
    projection: Projection | None = None

    def embedder(self, cfg: Config | None = None) -> Embedder:
        """The run's inference: input size and test-time augmentation from ``cfg`` (default:
        the run's config, e.g. with ``--set eval.flip=false`` applied), and the PCA."""
        return Embedder.configured(self.model, cfg or self.config, self.projection)


def save_bundle(path: str | Path, cfg: Config, model: nn.Module, num_classes: int,
                projection: Projection | None = None) -> None:
    payload = {"format": "progreid-bundle-1", "config": config_to_dict(cfg),
               "num_classes": num_classes,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "normalization": [list(values) for values in model.normalization]}
    if projection is not None:
        payload["pca"] = {"mean": projection.mean.cpu(), "components": projection.components.cpu()}
    save_checkpoint(path, payload)


def resolve_bundle_path(path: str | Path) -> Path:
    """A run folder means its ``model.pt``; a file is taken as it is."""
    path = Path(path)
    return path / BUNDLE_NAME if path.is_dir() else path


def load_bundle(path: str | Path, device: torch.device | str = "cpu") -> Bundle:
    """Rebuild the model of a run folder or ``model.pt`` in eval mode on ``device``."""
    path = resolve_bundle_path(path)
    payload = load_checkpoint(path)
    if payload.get("format") != "progreid-bundle-1":
        raise CheckpointError(f"{path} is not a progreid model bundle (no 'format' marker); "
                              "pass a run folder or its model.pt")
    require_keys(payload, ("config", "num_classes", "state_dict"), path, "progreid model bundle")
    cfg = config_from_dict(payload["config"], source=str(path))
    # The trained weights replace any initialisation: never fetch the pretrained ones again.
    try:
        model = build_model(num_classes=payload["num_classes"],
                            **{**cfg.model.model_dump(), "pretrained": None})
    except ValueError as exc:
        raise CheckpointError(f"{path}: cannot rebuild its model: {exc}") from exc
    load_weights(model, payload["state_dict"], path)
    if "normalization" in payload:  # bundles written before it was recorded used the backbone's
        mean, std = payload["normalization"]
        model.normalization = (tuple(mean), tuple(std))
    projection = None
    if "pca" in payload:
        projection = Projection(payload["pca"]["mean"], payload["pca"]["components"])
    return Bundle(model.to(device).eval(), cfg, payload["num_classes"], projection)
