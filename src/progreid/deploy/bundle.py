"""The deployable model of a run: config, weights and optional PCA projection, written twice.

``model.pt`` (``torch.save``, read back with ``weights_only=True``) and, beside it,
``model.safetensors``: the same network weights (state-dict names) and PCA (``pca.mean``,
``pca.components``) as plain tensors, with the config, class count, input normalisation and
match threshold as JSON strings in the file's metadata, so the weights load without unpickling
anything. The match threshold (:class:`~progreid.evaluation.threshold.MatchThreshold`, calibrated
on the run's test set) is absent from bundles written before it was recorded: None.

:meth:`Bundle.embedder` is how every user of a trained model embeds images: exactly as the
run's evaluation did (normalisation, network, test-time augmentation, PCA).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from progreid.config import Config, config_from_dict, config_to_dict
from progreid.evaluation.features import Embedder
from progreid.evaluation.pca import Projection
from progreid.evaluation.threshold import MatchThreshold
from progreid.models import build_model
from progreid.utils.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_weights,
    require_keys,
    save_checkpoint,
)
from progreid.utils.io import atomic_path

BUNDLE_NAME = "model.pt"
WEIGHTS_NAME = "model.safetensors"
BUNDLE_FORMAT = "progreid-bundle-1"
WEIGHTS_FORMAT = "progreid-safetensors-1"
#: The PCA projection's tensors in ``model.safetensors``, beside the network's state dict.
PCA_KEYS = {"pca.mean": "mean", "pca.components": "components"}


@dataclass
class Bundle:
    model: nn.Module
    config: Config
    num_classes: int
    projection: Projection | None = None
    match_threshold: MatchThreshold | None = None

    def embedder(self, cfg: Config | None = None) -> Embedder:
        """The run's inference: input size and test-time augmentation from ``cfg`` (default:
        the run's config, e.g. with ``--set eval.flip=false`` applied), and the PCA."""
        return Embedder.configured(self.model, cfg or self.config, self.projection)


def save_bundle(path: str | Path, cfg: Config, model: nn.Module, num_classes: int,
                projection: Projection | None = None,
                match_threshold: MatchThreshold | None = None) -> None:
    """Write ``path`` (``model.pt``) and its safetensors twin beside it (same name, suffix
    ``.safetensors``), the twin first: a ``model.pt`` always has one."""
    path = Path(path)
    payload = {"format": BUNDLE_FORMAT, "config": config_to_dict(cfg),
               "num_classes": num_classes,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "normalization": [list(values) for values in model.normalization]}
    if projection is not None:
        payload["pca"] = {"mean": projection.mean.cpu(), "components": projection.components.cpu()}
    if match_threshold is not None:
        payload["match_threshold"] = match_threshold.to_dict()
    twin = path.with_suffix(".safetensors")
    save_safetensors(twin, payload)
    try:
        save_checkpoint(path, payload)
    except BaseException:
        twin.unlink(missing_ok=True)  # no twin without its model.pt
        raise


def save_safetensors(path: Path, payload: dict[str, Any]) -> None:
    """The tensors of a bundle payload as safetensors (cloned: the format refuses tensors
    that share memory), its other entries as JSON strings in the metadata; atomic."""
    tensors = {**payload["state_dict"],
               **{key: payload["pca"][name] for key, name in PCA_KEYS.items()
                  if "pca" in payload}}
    metadata = {"format": WEIGHTS_FORMAT, "config": json.dumps(payload["config"]),
                "num_classes": str(payload["num_classes"]),
                "normalization": json.dumps(payload["normalization"])}
    if "match_threshold" in payload:
        metadata["match_threshold"] = json.dumps(payload["match_threshold"])
    with atomic_path(path) as tmp:  # written from Python: a full disk is then an OSError
        tmp.write_bytes(safetensors_bytes({key: value.contiguous().clone()
                                           for key, value in tensors.items()}, metadata))


def read_safetensors(path: Path) -> dict[str, Any]:
    """A ``model.safetensors`` as the payload of ``model.pt`` (no pickle involved)."""
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    try:
        with safe_open(path, framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); pass a run "
                              "folder, its model.pt or its model.safetensors") from exc
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise CheckpointError(f"{path} is not a progreid model (its metadata has no 'format': "
                              f"'{WEIGHTS_FORMAT}'); pass the model.safetensors of a run")
    require_keys(metadata, ("config", "num_classes", "normalization"), path,
                 "progreid safetensors model")
    pca = {name: tensors.pop(key) for key, name in PCA_KEYS.items() if key in tensors}
    try:
        fields = {"config": json.loads(metadata["config"]),
                  "num_classes": int(metadata["num_classes"]),
                  "normalization": json.loads(metadata["normalization"])}
        if "match_threshold" in metadata:
            fields["match_threshold"] = json.loads(metadata["match_threshold"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: unreadable progreid metadata ({exc}); the file is "
                              "corrupt, use its run's model.pt") from exc
    return {**fields, "state_dict": tensors, **({"pca": pca} if pca else {})}


def resolve_bundle_path(path: str | Path) -> Path:
    """A run folder means its ``model.pt`` (its ``model.safetensors`` when only that one is
    there); a file is taken as it is."""
    path = Path(path)
    if path.is_dir() and not (path / BUNDLE_NAME).exists() and (path / WEIGHTS_NAME).exists():
        return path / WEIGHTS_NAME
    return path / BUNDLE_NAME if path.is_dir() else path


def load_bundle(path: str | Path, device: torch.device | str = "cpu") -> Bundle:
    """Rebuild the model of a run folder, ``model.pt`` or ``model.safetensors`` in eval mode on
    ``device``."""
    path = resolve_bundle_path(path)
    if path.suffix == ".safetensors":
        payload = read_safetensors(path)
    else:
        payload = load_checkpoint(path)
        if payload.get("format") != BUNDLE_FORMAT:
            raise CheckpointError(f"{path} is not a progreid model bundle (no 'format' marker); "
                                  "pass a run folder or its model.pt")
        require_keys(payload, ("config", "num_classes", "state_dict"), path,
                     "progreid model bundle")
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
    return Bundle(model.to(device).eval(), cfg, payload["num_classes"], projection,
                  read_match_threshold(payload, path))


def read_match_threshold(payload: dict[str, Any], path: Path) -> MatchThreshold | None:
    """The bundle's match threshold; None for a bundle written before it was recorded."""
    if payload.get("match_threshold") is None:
        return None
    try:
        return MatchThreshold.from_dict(payload["match_threshold"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: unreadable match threshold ({exc})") from exc
