"""Feature extraction with test-time augmentation (flip, or PLA's 10 crops) and PCA.

:class:`Embedder` is the one inference contract: evaluation (during and after training and
``progreid evaluate``), the gallery index and its queries, the report and the export all embed
images through it, so they all live in the same space.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from progreid.config import Config
from progreid.data.loading import Workers, build_eval_loader
from progreid.data.sample import Sample
from progreid.data.transforms import centre_crop, flip, normalize, ten_crop
from progreid.evaluation.onnx_runtime import OnnxNetwork
from progreid.evaluation.pca import Projection
from progreid.utils.device import use_bf16_autocast
from progreid.utils.distributed import gather_strided_rows, process_group, share_rank0_buffers
from progreid.utils.progress import progress

#: PLA Sec. 4.2: the 10 crops are cut from the image enlarged by this factor.
TEN_CROP_ENLARGE = 1.125


@dataclass
class Features:
    """Embeddings of a list of samples with their identities and cameras."""

    features: torch.Tensor
    pids: np.ndarray
    camids: np.ndarray


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
    #: Run the network on channels_last tensors (faster on the CPU and on CUDA, same results to
    #: float rounding; docs/performance.md). The model is converted once, here.
    channels_last: bool = True
    #: Run the network under bf16 autocast where :func:`use_bf16_autocast` allows (``eval.amp``;
    #: PyTorch only).
    amp: bool = False
    #: What runs the network when :meth:`extract` embeds on the CPU (``eval.cpu_runtime``):
    #: PyTorch, or ONNX Runtime on a snapshot of the weights (:mod:`.onnx_runtime`).
    cpu_runtime: Literal["torch", "onnxruntime"] = "torch"
    #: Embed the centre of the image enlarged by 1.125 (``eval.centre_crop``; and its mirror
    #: with ``flip``) in place of the whole image; 10-crop's views include it.
    centre_crop: bool = False

    def __post_init__(self) -> None:
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    @classmethod
    def configured(cls, model: nn.Module, cfg: Config,
                   projection: Projection | None = None) -> Embedder:
        """``model`` at the size of ``cfg.data`` with the test-time augmentation of ``cfg.eval``."""
        return cls(model, cfg.data.height, cfg.data.width, cfg.eval.flip, cfg.eval.ten_crop,
                   projection, amp=cfg.eval.amp, cpu_runtime=cfg.eval.cpu_runtime,
                   centre_crop=cfg.eval.centre_crop)

    def network(self, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        """What embeds a normalised batch on ``device``: the model, or for ``cpu_runtime``
        onnxruntime on the CPU, the model's current weights in an onnxruntime session."""
        if self.cpu_runtime == "onnxruntime" and device.type == "cpu":
            return OnnxNetwork(self.model, self.height, self.width)
        return self.model

    @torch.no_grad()
    def embed(self, images_uint8: torch.Tensor,
              network: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Embeddings of one ``B x 3 x H x W`` uint8 batch (the model must be in eval mode),
        averaged over the test-time views; ``network`` (default: the model) runs the views,
        :meth:`network` gives the configured one.

        Images are normalised with ``model.normalization``, the ``(mean, std)`` of its backbone's
        pretrained weights (recorded in the model bundle), exactly as in training. ``ten_crop``
        follows PLA Sec. 4.2: the four corners and the centre of the image enlarged by 1.125,
        and their mirrors; otherwise ``flip`` averages the image (or with ``centre_crop`` the
        centre of the enlarged image) with its mirror.
        """
        if self.ten_crop:
            views = ten_crop(images_uint8, TEN_CROP_ENLARGE)
        else:
            image = (centre_crop(images_uint8, TEN_CROP_ENLARGE) if self.centre_crop
                     else images_uint8)
            views = [image, flip(image)] if self.flip else [image]
        mean, std = self.model.normalization
        network = self.model if network is None else network
        torch_network = network is self.model
        layout = (torch.channels_last if self.channels_last and torch_network
                  else torch.contiguous_format)
        bf16 = self.amp and torch_network and use_bf16_autocast(True, images_uint8.device)
        with torch.autocast(images_uint8.device.type, torch.bfloat16, enabled=bf16):
            features = sum(network(normalize(v, mean, std).contiguous(memory_format=layout))
                           .float() for v in views) / len(views)
        return features if self.projection is None else self.projection(features)

    @torch.no_grad()
    def extract(self, samples: Sequence[Sample], device: torch.device | str = "cpu",
                batch_size: int = 128, workers: Workers = 0) -> Features:
        """Embeddings of ``samples`` (decoded from their files), with identities and cameras;
        the features stay on ``device``.

        Under torchrun (with at least as many samples as processes) each process embeds every
        W-th sample with rank 0's batch-norm statistics and all of them receive all the
        features."""
        was_training = self.model.training
        self.model.eval()
        device = torch.device(device)
        rank, world = process_group()
        if world > 1 and len(samples) < world:
            rank, world = 0, 1  # too few to split: every process embeds them all
        if world > 1:
            share_rank0_buffers(self.model)
        loader = build_eval_loader(samples[rank::world], self.height, self.width, batch_size,
                                   workers)
        network = self.network(device)
        bar = progress(loader, f"embedding {len(samples)} images", unit="batch", enabled=rank == 0)
        chunks = [self.embed(images.to(device, non_blocking=True), network) for images, *_ in bar]
        self.model.train(was_training)
        features = torch.cat(chunks) if chunks else torch.empty(0, 0, device=device)
        if world > 1:
            features = gather_strided_rows(features, len(samples))
        return Features(features, np.array([s.pid for s in samples], dtype=np.int64),
                        np.array([s.camid for s in samples], dtype=np.int64))
