"""The decoded-image cache: the same batches as decoding, built once, invalidated, atomic."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import progreid.data.loading as loading
from progreid.config import load_config
from progreid.data.cache import (
    CACHE_DIR_ENV,
    CachedTrainLoader,
    cache_path,
    decoded_images,
    default_cache_dir,
)
from progreid.data.loading import build_train_loader
from progreid.data.sample import DatasetError, ReIDDataset, Sample
from progreid.data.sampler import PKSampler
from progreid.training.trainer import Trainer

HEIGHT, WIDTH = 32, 16


def _write_images(folder: Path, identities: int = 4, per_identity: int = 5) -> list[Sample]:
    """Random JPEGs of varied sizes (so decoding resizes) and a grey PNG (so it converts)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for pid in range(identities):
        for i in range(per_identity):
            size = (int(rng.integers(20, 40)), int(rng.integers(40, 80)))
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            path = folder / f"{pid:04d}_c{i % 2}_{i:02d}.jpg"
            Image.fromarray(pixels).save(path, quality=90)
            samples.append(Sample(path, pid, i % 2))
    grey = folder / "0000_c1_99.png"
    Image.fromarray(rng.integers(0, 256, (50, 25), dtype=np.uint8), mode="L").save(grey)
    samples.append(Sample(grey, 0, 1))
    return samples


@pytest.fixture
def samples(tmp_path: Path) -> list[Sample]:
    return _write_images(tmp_path / "images")


def _reference(samples: list[Sample]) -> np.ndarray:
    """Each image decoded on its own, the way the uncached loader does (N x 3 x H x W)."""
    return np.stack([loading.decode_image(s.path, HEIGHT, WIDTH).transpose(2, 0, 1)
                     for s in samples])


def test_cache_holds_every_decoded_image(samples, tmp_path):
    images = decoded_images(samples, HEIGHT, WIDTH, cache_dir=tmp_path / "cache")
    assert isinstance(images, np.memmap)
    assert images.dtype == np.uint8 and images.shape == (len(samples), 3, HEIGHT, WIDTH)
    np.testing.assert_array_equal(images, _reference(samples))


def test_cached_loader_gives_identical_batches_to_decoding(samples, tmp_path):
    images = torch.from_numpy(decoded_images(samples, HEIGHT, WIDTH, cache_dir=tmp_path))
    pids = [s.pid for s in samples]
    plain = build_train_loader(samples, HEIGHT, WIDTH, PKSampler(pids, 2, 3, seed=5), workers=0)
    cached = CachedTrainLoader(images, samples, PKSampler(pids, 2, 3, seed=5))
    assert len(cached) == len(plain)
    for epoch in range(3):
        plain.batch_sampler.set_epoch(epoch)
        cached.sampler.set_epoch(epoch)
        for expected, got in zip(plain, cached, strict=True):
            for a, b in zip(expected, got, strict=True):
                assert a.dtype == b.dtype and torch.equal(a, b)


def _trainer(root: Path, dataset: ReIDDataset, cache: bool) -> Trainer:
    cfg = load_config(None, [f"data.cache={str(cache).lower()}", f"data.height={HEIGHT}",
                             f"data.width={WIDTH}", "data.p=2", "data.k=3", "data.workers=0",
                             "model.backbone=resnet18", "model.width=0.125", "train.seed=3",
                             "train.device=cpu", "train.progress=false"])
    return Trainer(cfg, dataset, root / ("cached" if cache else "plain"))


def test_trainer_batches_identical_with_and_without_cache(samples, tmp_path, monkeypatch):
    """Same seed: the augmented training batches of the cached path equal the decoding path."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    dataset = ReIDDataset("jpegs", samples, [], [])
    plain, cached = _trainer(tmp_path, dataset, False), _trainer(tmp_path, dataset, True)
    assert list((tmp_path / "cache").glob("*.npy"))
    for epoch in range(2):
        plain.epoch = cached.epoch = epoch
        for (x1, y1), (x2, y2) in zip(plain.batches(), cached.batches(), strict=True):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_cache_is_decoded_once_and_reused(samples, tmp_path, monkeypatch):
    calls = []
    real = loading.decode_image

    def counting(path, height, width):
        calls.append(path)
        return real(path, height, width)

    monkeypatch.setattr(loading, "decode_image", counting)
    first = decoded_images(samples, HEIGHT, WIDTH, cache_dir=tmp_path)
    assert sorted(map(str, calls)) == sorted(str(s.path) for s in samples)
    calls.clear()
    second = decoded_images(samples, HEIGHT, WIDTH, cache_dir=tmp_path)
    assert calls == []
    np.testing.assert_array_equal(first, second)


def test_writing_to_the_array_never_changes_the_cache_file(samples, tmp_path):
    images = decoded_images(samples, HEIGHT, WIDTH, cache_dir=tmp_path)
    images[0] = 0
    np.testing.assert_array_equal(decoded_images(samples, HEIGHT, WIDTH, cache_dir=tmp_path)[0],
                                  _reference(samples[:1])[0])


def test_changed_file_invalidates_the_cache(samples, tmp_path):
    old_path = cache_path(samples, HEIGHT, WIDTH, tmp_path)
    decoded_images(samples, HEIGHT, WIDTH, cache_dir=tmp_path)
    changed = samples[3].path
    Image.new("RGB", (16, 32), (200, 10, 10)).save(changed, quality=95)
    stat = os.stat(changed)
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    new_path = cache_path(samples, HEIGHT, WIDTH, tmp_path)
    assert new_path != old_path
    images = decoded_images(samples, HEIGHT, WIDTH, cache_dir=tmp_path)
    np.testing.assert_array_equal(images, _reference(samples))
    assert sorted(tmp_path.glob("*.npy")) == [new_path], "the stale cache must be deleted"


def test_key_depends_on_file_list_and_size(samples, tmp_path):
    base = cache_path(samples, HEIGHT, WIDTH, tmp_path)
    assert cache_path(samples, HEIGHT, WIDTH, tmp_path) == base
    others = {cache_path(samples[:-1], HEIGHT, WIDTH, tmp_path),
              cache_path(samples, HEIGHT * 2, WIDTH, tmp_path),
              cache_path(samples, HEIGHT, WIDTH * 2, tmp_path),
              cache_path(samples[::-1], HEIGHT, WIDTH, tmp_path)}
    assert base not in others and len(others) == 4


def test_failed_build_leaves_no_cache_file(samples, tmp_path):
    samples[5].path.write_bytes(b"")
    with pytest.raises(DatasetError, match=str(samples[5].path)):
        decoded_images(samples, HEIGHT, WIDTH, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # nor the folder made for it


def test_missing_image_and_empty_list_are_clear_errors(samples, tmp_path):
    missing = Sample(tmp_path / "nope.jpg", 0, 0)
    with pytest.raises(DatasetError, match="nope.jpg"):
        cache_path([*samples, missing], HEIGHT, WIDTH, tmp_path)
    with pytest.raises(DatasetError, match="empty"):
        decoded_images([], HEIGHT, WIDTH, cache_dir=tmp_path)


def test_cache_folder_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv(CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "progreid" / "decoded"
