"""Feature extraction with test-time augmentation (flip, or PLA's 10 crops) and PCA.

:class:`Embedder` is the one inference contract: evaluation (during and after training and
``progreid evaluate``), the gallery index and its queries, the report and the export all embed
images through it, so they all live in the same space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from progreid.config import Config
from progreid.data.loading import build_eval_loader
from progreid.data.sample import Sample
from progreid.data.transforms import flip, normalize, ten_crop
from progreid.evaluation.pca import Projection
from progreid.utils.distributed import gather_strided_rows, process_group, share_rank0_buffers


@dataclass
class Features:
    """Embeddings of a list of samples with their identities and cameras."""

    features: torch.Tensor
    pids: np.ndarray
    camids: np.ndarray


@torch.no_grad()
def embed_batch(model: nn.Module, images_uint8: torch.Tensor, flip_tta: bool = True,
                ten_crop_tta: bool = False, enlarge: float = 1.125) -> torch.Tensor:
    """Embeddings of one uint8 batch, averaged over the test-time views.

    Images are normalised with ``model.normalization``, the ``(mean, std)`` of its backbone's
    pretrained weights (recorded in the model bundle), exactly as in training.

    ``ten_crop_tta`` follows PLA Sec. 4.2: the four corners and the centre of the image enlarged by
    ``enlarge``, and their mirrors. Otherwise ``flip_tta`` averages with the mirrored image.
    """
    if ten_crop_tta:
        views = ten_crop(images_uint8, enlarge)
    elif flip_tta:
        views = [images_uint8, flip(images_uint8)]
    else:
        views = [images_uint8]
    total = None
    mean, std = model.normalization
    for view in views:
        feats = model(normalize(view, mean, std)).float()
        total = feats if total is None else total + feats
    return total / len(views)


@torch.no_grad()
def extract_features(model: nn.Module, samples: Sequence[Sample], height: int, width: int,
                     device: torch.device | str = "cpu", batch_size: int = 128,
                     workers: int = 0, flip_tta: bool = True, ten_crop_tta: bool = False,
                     channels_last: bool = False) -> Features:
    """Embed ``samples`` with ``model`` in eval mode; features stay on ``device``.

    Under torchrun (with at least as many samples as processes) each process embeds every W-th
    sample with rank 0's batch-norm statistics and all of them receive all the features."""
    was_training = model.training
    model.eval()
    device = torch.device(device)
    rank, world = process_group()
    if world > 1 and len(samples) < world:
        rank, world = 0, 1  # too few to split: every process embeds them all
    if world > 1:
        share_rank0_buffers(model)
    chunks = []
    loader = build_eval_loader(samples[rank::world], height, width, batch_size, workers)
    for images, *_ in loader:
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        chunks.append(embed_batch(model, images, flip_tta, ten_crop_tta))
    model.train(was_training)
    features = torch.cat(chunks) if chunks else torch.empty(0, 0, device=device)
    if world > 1:
        features = gather_strided_rows(features, len(samples))
    return Features(features,
                    np.array([s.pid for s in samples], dtype=np.int64),
                    np.array([s.camid for s in samples], dtype=np.int64))


@dataclass
class Embedder:
    """uint8 RGB images -> test embeddings: the model's normalisation, the network in eval mode,
    flip or 10-crop test-time augmentation (PLA Sec. 4.2), then the PCA :class:`Projection`
    when there is one. ``height`` x ``width`` is the size samples are decoded at."""

    model: nn.Module
    height: int
    width: int
    flip: bool = True
    ten_crop: bool = False
    projection: Projection | None = None

    @classmethod
    def configured(cls, model: nn.Module, cfg: Config,
                   projection: Projection | None = None) -> Embedder:
        """``model``'s inference at the input size of ``cfg.data`` with the test-time
        augmentation of ``cfg.eval``."""
        return cls(model, cfg.data.height, cfg.data.width, cfg.eval.flip, cfg.eval.ten_crop,
                   projection)

    def embed(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """Embeddings of one ``B x 3 x H x W`` uint8 batch (the model must be in eval mode)."""
        features = embed_batch(self.model, images_uint8, self.flip, self.ten_crop)
        return features if self.projection is None else self.projection(features)

    def extract(self, samples: Sequence[Sample], device: torch.device | str = "cpu",
                batch_size: int = 128, workers: int = 0) -> Features:
        """Embeddings of ``samples`` (decoded from their files), with identities and cameras."""
        features = extract_features(self.model, samples, self.height, self.width, device,
                                    batch_size, workers, self.flip, self.ten_crop)
        if self.projection is not None:
            features.features = self.projection(features.features)
        return features
