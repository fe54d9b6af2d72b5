"""Decoded-image cache (``data.cache: true``): training images decoded and resized once.

The first training run on a dataset decodes every training image once, in file order and in the
DataLoader workers, into a uint8 ``N x 3 x H x W`` array saved as a ``.npy`` file (written
atomically: a crash leaves no partial cache). Every epoch then reads its batches from that array
through a memory map, or from a copy in GPU memory when it fits, instead of decoding JPEGs.

The file is ``<cache dir>/<dataset key>-<content key>.npy``: the dataset key hashes the image
paths and the size, the content key each file's size and modification time. A changed, added or
removed image gives a new content key, so the stale cache is never read; it is deleted when the
new one is written. The cache folder is ``$PROGREID_CACHE_DIR``, else
``$XDG_CACHE_HOME/progreid/decoded`` (default ``~/.cache/progreid/decoded``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from progreid.data.loading import Workers, build_eval_loader
from progreid.data.sample import DatasetError, Sample
from progreid.data.sampler import PKSampler
from progreid.errors import OutputError
from progreid.utils.io import atomic_path

CACHE_DIR_ENV = "PROGREID_CACHE_DIR"
CACHE_FORMAT = 1
DECODE_BATCH = 64
#: On CUDA the decoded images move to GPU memory when they take at most this share of it.
DEVICE_SHARE = 0.25

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def default_cache_dir() -> Path:
    """``$PROGREID_CACHE_DIR``, else ``$XDG_CACHE_HOME/progreid/decoded``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "progreid" / "decoded"


def content_stamp(path: str | os.PathLike) -> str:
    """The size and modification time of the image ``path``: what says it changed, without
    reading it (:class:`DatasetError` naming it if it cannot be read)."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise DatasetError(f"cannot read image {path}: {exc.strerror or exc}") from exc
    return f"{stat.st_size} {stat.st_mtime_ns}"


def cache_path(samples: Sequence[Sample], height: int, width: int,
               cache_dir: str | Path | None = None) -> Path:
    """Where the decoded images of ``samples`` at ``height x width`` are cached."""
    dataset = hashlib.sha256(f"progreid-cache-{CACHE_FORMAT} {height}x{width}\n".encode())
    content = hashlib.sha256()
    for sample in samples:
        path = os.path.abspath(sample.path)
        dataset.update(f"{path}\n".encode())
        content.update(f"{content_stamp(path)}\n".encode())
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"{dataset.hexdigest()[:20]}-{content.hexdigest()[:20]}.npy"


def _write_cache(path: Path, samples: Sequence[Sample], height: int, width: int,
                 workers: Workers) -> None:
    """Decode every sample once into ``path`` (atomically), then drop stale versions of it.

    A folder that cannot take the file is an :class:`OutputError` saying how to choose another.
    """
    try:
        with atomic_path(path) as tmp:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                              shape=(len(samples), 3, height, width))
            _reserve(tmp)
            start = 0
            for images, *_ in build_eval_loader(samples, height, width, DECODE_BATCH, workers):
                array[start:start + len(images)] = images.numpy()
                start += len(images)
            array.flush()
            del array
    except OutputError as exc:
        exc.add_note(f"set ${CACHE_DIR_ENV} to a writable folder with room for the "
                     "decoded-image cache, or data.cache=false")
        raise
    dataset_key = path.name.split("-")[0]
    for stale in path.parent.glob(f"{dataset_key}-*.npy"):
        if stale != path:
            stale.unlink(missing_ok=True)


def _reserve(path: Path) -> None:
    """Allocate the whole file now: a full disk is then an ``OSError`` here, not a ``SIGBUS``
    when the memory map writes to a page the disk has no room for."""
    with open(path, "r+b") as handle:
        os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)


def decoded_images(samples: Sequence[Sample], height: int, width: int, workers: Workers = 0,
                   cache_dir: str | Path | None = None) -> np.ndarray:
    """Memory-mapped ``N x 3 x H x W`` uint8 images of ``samples``, decoded on first use.

    The map is copy-on-write: writing to the array never changes the cache file.
    """
    if not samples:
        raise DatasetError("cannot cache an empty list of training images")
    path = cache_path(samples, height, width, cache_dir)
    if not path.exists():
        _write_cache(path, samples, height, width, workers)
    array = np.load(path, mmap_mode="c")
    expected = (len(samples), 3, height, width)
    if array.dtype != np.uint8 or array.shape != expected:
        raise DatasetError(f"decoded-image cache {path} holds {array.dtype} {array.shape}, "
                           f"expected uint8 {expected}; delete the file to rebuild it")
    return array


class CachedTrainLoader:
    """The batches of ``sampler`` read from cached images, in the same form and order as
    :func:`progreid.data.loading.build_train_loader`: ``(uint8 B x 3 x H x W, pids, camids,
    indices)``. CPU-held images are gathered into pinned memory when ``pin_memory``."""

    def __init__(self, images: torch.Tensor, samples: Sequence[Sample], sampler: PKSampler,
                 pin_memory: bool = False) -> None:
        if images.shape[0] != len(samples):
            raise ValueError(f"{images.shape[0]} cached images for {len(samples)} samples")
        self.images = images
        self.pids = torch.tensor([s.pid for s in samples], dtype=torch.int64)
        self.camids = torch.tensor([s.camid for s in samples], dtype=torch.int64)
        self.sampler = sampler
        self.pin_memory = pin_memory and images.device.type == "cpu"

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.sampler:
            index = torch.as_tensor(batch, dtype=torch.int64)
            images = self.images.index_select(0, index.to(self.images.device))
            if self.pin_memory:
                images = images.pin_memory()
            yield images, self.pids[index], self.camids[index], index


def build_cached_train_loader(samples: Sequence[Sample], height: int, width: int,
                              sampler: PKSampler, workers: Workers,
                              device: torch.device) -> CachedTrainLoader:
    """:func:`progreid.data.loading.build_train_loader` over the decoded-image cache: on CUDA
    in GPU memory when it fits in :data:`DEVICE_SHARE` of the free memory, else (and on CPU) a
    zero-copy view of the memory map."""
    images = torch.from_numpy(decoded_images(samples, height, width, workers))
    if device.type == "cuda" and \
            images.numel() <= DEVICE_SHARE * torch.cuda.mem_get_info(device)[0]:
        images = images.to(device)
    return CachedTrainLoader(images, samples, sampler, pin_memory=device.type == "cuda")
