"""The Python API of a trained model: :func:`load` a run or an exported ONNX file, then
:meth:`ReIDModel.embed` images or :meth:`ReIDModel.embed_crops` person boxes of a frame.

Every input is brought to what evaluation decodes from a file (RGB uint8 at the run's
``data.height x data.width``, bilinear resize) and embedded by the backend: for a run, its
:class:`~progreid.evaluation.features.Embedder` (:meth:`Bundle.embedder`: normalisation,
network, flip or 10-crop test-time augmentation, PCA), so the features are those of
``progreid evaluate``: raw, not L2-normalised (the cosine metric normalises when it compares);
for an ``.onnx`` file, the exported graph (:mod:`progreid.deploy.onnx_backend`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from numpy.typing import ArrayLike
from PIL import Image

from progreid.config import Config
from progreid.data.loading import decode_image, image_array
from progreid.deploy.bundle import Bundle, load_bundle, resolve_bundle_path
from progreid.evaluation.features import Embedder
from progreid.evaluation.threshold import MatchThreshold
from progreid.utils.device import resolve_device

#: One image: a file, a PIL image or an ``H x W x 3`` uint8 array (RGB, or BGR with ``bgr``).
ImageLike = str | Path | Image.Image | np.ndarray
#: Images: a sequence of :data:`ImageLike` or a uint8 ``B x 3 x H x W`` tensor.
Images = Sequence[ImageLike] | torch.Tensor
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def check_array(array: np.ndarray, name: str) -> None:
    """Refuse anything but an ``H x W x 3`` uint8 array."""
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"{name} must be an H x W x 3 uint8 array, got shape "
                         f"{array.shape} and dtype {array.dtype}")


def array_image(array: np.ndarray, bgr: bool) -> Image.Image:
    """A PIL RGB image of an ``H x W x 3`` uint8 array (BGR channels reversed)."""
    check_array(array, "an image array")
    return Image.fromarray(np.ascontiguousarray(array[..., ::-1] if bgr else array))


def pixel_boxes(boxes_xyxy: ArrayLike, height: int, width: int) -> np.ndarray:
    """``N x 4`` integer ``x1, y1, x2, y2`` (end exclusive) covering each box, clipped to the
    frame; an empty box after clipping raises ValueError naming its index."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
        raise ValueError(f"boxes_xyxy must be N x 4 finite x1, y1, x2, y2; got shape "
                         f"{boxes.shape}")
    limits = np.array([width, height, width, height])
    clipped = np.clip(boxes, 0, limits)
    pixels = np.concatenate([np.floor(clipped[:, :2]), np.ceil(clipped[:, 2:])], 1).astype(int)
    empty = np.flatnonzero((pixels[:, 2] <= pixels[:, 0]) | (pixels[:, 3] <= pixels[:, 1]))
    if len(empty):
        index = int(empty[0])
        raise ValueError(f"box {index} {boxes[index].tolist()} is empty inside the {width} x "
                         f"{height} frame")
    return pixels


class ReIDModel(ABC):
    """What :func:`load` returns, whichever file it opened: ``embed`` and ``embed_crops`` of
    the run's model on ``device``, with the run's ``config`` (``metric``, input size) and the
    embedding length ``dim``. A backend embeds one uint8 batch at the run's size.

    ``match_threshold``: two images show the same person when the distance
    :meth:`progreid.Gallery.search` reports between them (not re-ranked) is at most this, as
    calibrated by the run's final evaluation on its test set (the threshold that maximises the
    balanced accuracy over all query x gallery pairs, :mod:`progreid.evaluation.threshold`).
    ``calibration`` is that record: ``threshold`` in the run's metric (``calibration.metric``,
    e.g. ``1 - cos`` for cosine; ``match_threshold`` is the same on the Euclidean distances of
    L2-normalised features that search reports), its ``balanced_accuracy``, ``tpr``, ``tnr``.
    Both are None for a model saved before thresholds were recorded. The test set is not your
    camera: re-calibrate on your own labelled pairs when you can.
    """

    path: Path
    device: torch.device
    dtype: torch.dtype
    config: Config
    calibration: MatchThreshold | None

    @property
    def metric(self) -> str:
        """The run's ``eval.metric``: how its features are compared."""
        return self.config.eval.metric

    @property
    def match_threshold(self) -> float | None:
        """The calibrated same-person threshold on search distances (class docstring)."""
        return None if self.calibration is None else self.calibration.euclidean()

    @property
    def height(self) -> int:
        return self.config.data.height

    @property
    def width(self) -> int:
        return self.config.data.width

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of one embedding (after the PCA when the run has one)."""

    @abstractmethod
    def _embed_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """``B x D`` float32 embeddings on ``device`` of a uint8 RGB ``B x 3 x height x width``
        batch (on any device)."""

    def embed(self, images: Images, batch_size: int = 64, bgr: bool = False,
              as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """``N x D`` float32 embeddings (numpy, or a tensor on the model's device)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        chunks = [self._embed_batch(batch) for batch in self._batches(images, batch_size, bgr)]
        features = torch.cat(chunks) if chunks else torch.zeros(0, self.dim, device=self.device)
        return features if as_tensor else features.cpu().numpy()

    def embed_crops(self, frame: np.ndarray, boxes_xyxy: ArrayLike, bgr: bool = False,
                    batch_size: int = 64, as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """Embeddings of the person boxes (pixel ``x1, y1, x2, y2``) of one ``H x W x 3`` uint8
        frame, clipped to it; an empty box raises ValueError naming its index."""
        check_array(frame, "frame")
        boxes = pixel_boxes(boxes_xyxy, *frame.shape[:2])
        crops = [frame[y1:y2, x1:x2] for x1, y1, x2, y2 in boxes]
        return self.embed(crops, batch_size, bgr, as_tensor)

    def _batches(self, images: Images, batch_size: int, bgr: bool) -> Iterator[torch.Tensor]:
        """Contiguous uint8 ``B x 3 x height x width`` batches of ``images``, in order (as the
        evaluation loader collates them; normalising a permuted view is several times slower).
        Images are decoded and resized by as many threads as torch uses (PIL releases the GIL)."""
        if isinstance(images, str | Path | Image.Image) or (
                isinstance(images, np.ndarray) and images.ndim == 3):
            raise TypeError("embed takes a list of images; wrap a single image in a list")
        with ThreadPoolExecutor(torch.get_num_threads()) as pool:
            for start in range(0, len(images), batch_size):
                chunk = images[start:start + batch_size]
                if isinstance(chunk, torch.Tensor):
                    yield self._fit_tensor(chunk, bgr)
                else:
                    pixels = np.stack(list(pool.map(partial(self._pixels, bgr=bgr), chunk)))
                    yield torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()

    def _pixels(self, image: ImageLike, bgr: bool) -> np.ndarray:
        """One image as an ``height x width x 3`` uint8 RGB array."""
        if isinstance(image, str | Path):
            return decode_image(image, self.height, self.width)
        if isinstance(image, np.ndarray):
            image = array_image(image, bgr)
        if not isinstance(image, Image.Image):
            raise TypeError(f"cannot embed a {type(image).__name__}: pass file paths, PIL "
                            "images or H x W x 3 uint8 arrays")
        return image_array(image, self.height, self.width)

    def _fit_tensor(self, batch: torch.Tensor, bgr: bool) -> torch.Tensor:
        """A uint8 ``B x 3 x H x W`` batch in RGB at the run's size (resized like files)."""
        if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[1] != 3:
            raise ValueError(f"a tensor batch must be uint8 B x 3 x H x W, got shape "
                             f"{tuple(batch.shape)} and dtype {batch.dtype}")
        batch = batch.flip(1) if bgr else batch
        if tuple(batch.shape[2:]) == (self.height, self.width):
            return batch
        arrays = batch.permute(0, 2, 3, 1).cpu().numpy()
        return torch.from_numpy(np.stack([self._pixels(array, False) for array in arrays])
                                ).permute(0, 3, 1, 2)


@dataclass
class TorchReIDModel(ReIDModel):
    """A run's PyTorch model (``model.pt`` or ``model.safetensors``), embedding images as its
    evaluation did. ``dtype`` other than float32 runs the network under autocast (faster, not
    bit-equal to evaluation)."""

    bundle: Bundle
    path: Path
    device: torch.device
    dtype: torch.dtype = torch.float32
    embedder: Embedder = field(init=False)

    def __post_init__(self) -> None:
        self.embedder = self.bundle.embedder()

    @property
    def config(self) -> Config:
        return self.bundle.config

    @property
    def calibration(self) -> MatchThreshold | None:
        return self.bundle.match_threshold

    @property
    def dim(self) -> int:
        projection = self.embedder.projection
        return int(projection.components.shape[0]) if projection is not None \
            else int(self.bundle.model.embedding_dim)

    def _autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.dtype,
                              enabled=self.dtype != torch.float32)

    @torch.no_grad()
    def _embed_batch(self, batch: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.embedder.embed(batch.to(self.device)).float()


def load(path: str | Path, device: torch.device | str = "auto",
         dtype: torch.dtype = torch.float32) -> ReIDModel:
    """The model of a run folder, its ``model.pt`` or ``model.safetensors``, or an ``.onnx``
    file written by ``progreid export`` (onnxruntime), on ``device`` (``auto``: CUDA when there
    is one), embedding in ``dtype`` (float32, or for PyTorch bfloat16 / float16 under
    autocast; an ONNX file keeps the precision it was exported in)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(str, DTYPES))}, got {dtype}")
    if Path(path).suffix == ".onnx":
        from progreid.deploy.onnx_backend import load_onnx

        return load_onnx(Path(path), str(device), dtype)
    device = resolve_device(str(device), "device")
    bundle = load_bundle(path, device)
    return TorchReIDModel(bundle, resolve_bundle_path(path).resolve(), device, dtype)
