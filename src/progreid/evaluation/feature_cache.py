"""Embeddings kept beside a model between its evaluations.

``progreid evaluate`` embeds a list of images once per model file and embedding setting and
stores the features in ``features/`` beside the model; another evaluation of the same model
that changes only how the features are ranked (re-ranking and its k1 / k2 / lambda,
multi-query pooling, the metric, the protocol) reads them back instead of embedding the images
again. The key of a stored file covers everything the features depend on: the model file's
bytes, the embedding settings, the device type and the images (path, size and modification
time) with their identities and cameras; anything else makes a new file. A file that cannot be
read is embedded anew; one that cannot be written is skipped with a warning (the evaluation
does not need it).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from progreid.config import Config
from progreid.data.cache import content_stamp
from progreid.data.sample import Sample
from progreid.errors import OutputError
from progreid.evaluation.features import Features
from progreid.utils.io import atomic_path

log = logging.getLogger(__name__)

#: The folder of stored features, beside the model file.
FEATURES_FOLDER = "features"

#: The ``eval`` settings the embeddings depend on (the others only rank them).
EMBEDDING_SETTINGS = ("batch_size", "flip", "ten_crop", "centre_crop", "amp", "cpu_runtime")


def file_digest(path: Path) -> str:
    """The SHA-256 of ``path``'s bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class FeatureCache:
    """Features of sample lists stored in ``folder``, for one model file and embedding setting
    (``fingerprint``: what the features depend on besides the images)."""

    folder: Path
    fingerprint: dict[str, Any]
    device: torch.device = torch.device("cpu")
    _write_failed: bool = field(default=False, init=False)

    @classmethod
    def beside(cls, model_path: Path, cfg: Config, device: torch.device) -> FeatureCache:
        """The cache of ``model_path`` (a bundle file) embedded as ``cfg`` says on ``device``."""
        settings = {name: getattr(cfg.eval, name) for name in EMBEDDING_SETTINGS}
        return cls(model_path.parent / FEATURES_FOLDER,
                   {"model": file_digest(model_path), "device": device.type,
                    "height": cfg.data.height, "width": cfg.data.width, **settings}, device)

    def path_of(self, samples: Sequence[Sample]) -> Path:
        """The file of ``samples``' features: named by the hash of the fingerprint and of every
        sample's path, file size and modification time, identity and camera."""
        images = [(str(s.path), content_stamp(s.path), s.pid, s.camid) for s in samples]
        key = json.dumps({"fingerprint": self.fingerprint, "images": images}, sort_keys=True)
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.pt"

    def extract(self, embed: Callable[[Sequence[Sample]], Features],
                samples: Sequence[Sample]) -> Features:
        """``embed(samples)``, read from the stored file when there is one."""
        path = self.path_of(samples)
        stored = self._read(path, samples)
        if stored is not None:
            log.info("features of %d images read from %s", len(samples), path)
            return stored
        features = embed(samples)
        self._write(path, features)
        return features

    def _read(self, path: Path, samples: Sequence[Sample]) -> Features | None:
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location=self.device, weights_only=True)
            features = Features(payload["features"], payload["pids"].numpy(),
                                payload["camids"].numpy())
        except Exception as exc:  # a damaged file is embedded anew and rewritten
            log.warning("ignoring unreadable stored features %s (%s)", path, exc)
            return None
        matches = (len(features.features) == len(samples)
                   and np.array_equal(features.pids, [s.pid for s in samples])
                   and np.array_equal(features.camids, [s.camid for s in samples]))
        if not matches:
            log.warning("ignoring stored features %s: they do not match the images", path)
            return None
        return features

    def _write(self, path: Path, features: Features) -> None:
        if self._write_failed:
            return
        payload = {"features": features.features.detach().cpu(),
                   "pids": torch.from_numpy(np.asarray(features.pids)),
                   "camids": torch.from_numpy(np.asarray(features.camids))}
        try:
            with atomic_path(path) as tmp:
                torch.save(payload, tmp)
        except OutputError as exc:
            self._write_failed = True
            log.warning("features not stored for the next evaluation: %s", exc)
