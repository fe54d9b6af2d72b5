"""Image decoding to uint8 at the configured size (in DataLoader workers) and the loaders.

Augmentation is not done here: it runs on whole uint8 batches on the training device
(:mod:`progreid.data.transforms`), so a GPU does not wait on CPU workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from progreid.data.sample import DatasetError, Sample
from progreid.data.sampler import PKSampler

SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
#: Larger files are refused before decoding: ReID images are person crops, and a huge image in a
#: dataset is a mistake or a decompression bomb (4096 x 4096 RGB is already 48 MiB decoded).
MAX_IMAGE_PIXELS = 4096 * 4096
#: The most DataLoader worker processes ``data.workers: auto`` starts (each is a whole process).
AUTO_WORKERS_CAP = 4
#: ``data.workers``: a number of DataLoader worker processes, or ``auto``.
Workers = int | Literal["auto"]


def loader_workers(workers: Workers) -> int:
    """DataLoader worker processes for ``data.workers``: a number as given; ``auto`` leaves one
    of the cores this process may use (``os.sched_getaffinity``) to the training process, with
    at most :data:`AUTO_WORKERS_CAP` workers (none on one core: decoding in the main process)."""
    if workers != "auto":
        return workers
    return min(AUTO_WORKERS_CAP, len(os.sched_getaffinity(0)) - 1)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB view of any PIL mode: 16-bit grey is scaled to 8 bits (value / 257) rather than
    clipped; palette transparency goes through RGBA; alpha is dropped (colours kept)."""
    if image.mode in SIXTEEN_BIT_MODES:
        grey = np.asarray(image, dtype=np.float64).clip(0, 65535) / 257.0
        return Image.fromarray(np.rint(grey).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _open(path: Path) -> Image.Image:
    """Open ``path`` lazily (header only), failing with a message that names the file."""
    if not path.is_file():
        raise DatasetError(f"cannot decode image {path}: no such file")
    if path.stat().st_size == 0:
        raise DatasetError(f"cannot decode image {path}: empty file (0 bytes)")
    try:
        return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{path} is too large: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise DatasetError(f"cannot decode image {path}: not an image file of a known "
                           "format") from exc
    except OSError as exc:
        raise DatasetError(f"cannot decode image {path}: {exc}") from exc


def decode_image(path: str | Path, height: int, width: int) -> np.ndarray:
    """Decode ``path`` to an ``height x width x 3`` uint8 RGB array (bilinear resize).

    Unreadable, truncated, empty files and images above :data:`MAX_IMAGE_PIXELS` (refused before
    decoding) raise :class:`DatasetError` naming the file.
    """
    path = Path(path)
    with _open(path) as image:
        w, h = image.size
        if w * h > MAX_IMAGE_PIXELS:
            raise DatasetError(f"{path} is too large: {w} x {h} pixels, above the limit of "
                               f"{MAX_IMAGE_PIXELS:,} pixels for a person image")
        try:
            image.load()
            return image_array(image, height, width)
        except (OSError, ValueError, SyntaxError) as exc:
            raise DatasetError(f"cannot decode image {path}: {exc}") from exc


def image_array(image: Image.Image, height: int, width: int) -> np.ndarray:
    """A decoded image of any PIL mode as an ``height x width x 3`` uint8 RGB array (bilinear
    resize when its size differs): what :func:`decode_image` returns for a file."""
    rgb = _to_rgb(image)
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
    return np.array(rgb, dtype=np.uint8)


class ImageDataset(Dataset):
    """Samples decoded to ``(uint8 3 x H x W tensor, pid, camid, index)``."""

    def __init__(self, samples: Sequence[Sample], height: int, width: int) -> None:
        self.samples = list(samples)
        self.height, self.width = height, width

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        sample = self.samples[index]
        pixels = decode_image(sample.path, self.height, self.width)
        return torch.from_numpy(pixels).permute(2, 0, 1).contiguous(), sample.pid, \
            sample.camid, index


def build_train_loader(samples: Sequence[Sample], height: int, width: int, sampler: PKSampler,
                       workers: Workers) -> DataLoader:
    """Batches ``(uint8 B x 3 x H x W, pids, camids, indices)`` in the order of ``sampler``."""
    workers = loader_workers(workers)
    return DataLoader(ImageDataset(samples, height, width), batch_sampler=sampler,
                      num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=torch.cuda.is_available(), generator=_worker_seeds())


def build_eval_loader(samples: Sequence[Sample], height: int, width: int, batch_size: int,
                      workers: Workers) -> DataLoader:
    """Batches of ``samples`` in order, for feature extraction."""
    return DataLoader(ImageDataset(samples, height, width), batch_size=batch_size,
                      shuffle=False, num_workers=loader_workers(workers),
                      pin_memory=torch.cuda.is_available(), generator=_worker_seeds())


def _worker_seeds() -> torch.Generator:
    """A DataLoader's own generator for its workers' seeds (decoding draws no random numbers).

    Without it every iteration draws from the global torch RNG, so an evaluation between epochs
    or persistent workers (one draw per run, not per epoch) would shift the random numbers of
    training after a ``--resume`` and the run would no longer repeat bit for bit.
    """
    return torch.Generator().manual_seed(0)
