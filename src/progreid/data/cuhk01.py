"""CUHK01: ``campus/NNNNMMM.png`` = identity NNNN, image MMM; images 001-002 are camera A,
003-004 camera B. Standard protocol: a seeded split of the identities into 485 train / 486 test;
query = one camera of the test identities, gallery = the other."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from progreid.data.sample import (
    DatasetError,
    ReIDDataset,
    Sample,
    check_query_in_gallery,
    check_split,
    list_images,
    option_error,
    relabel,
    require_data_dir,
)

CUHK01_NAME = re.compile(r"^(?P<pid>\d{4})(?P<image>\d{3})\.png$", re.IGNORECASE)
CAMERAS = {"A": 0, "B": 1}


def _camera_of(image: int) -> int | None:
    """Camera A (0) for images 1-2, camera B (1) for images 3-4, None for another number."""
    return None if not 1 <= image <= 4 else CAMERAS["A"] if image <= 2 else CAMERAS["B"]


def _camera(image: int, path: Path) -> int:
    camera = _camera_of(image)
    if camera is None:
        raise DatasetError(f"image {path}: image number {image:03d} is outside 001-004")
    return camera


def parse_cuhk01_name(name: str) -> tuple[int, int] | None:
    """(identity, 0-based camera) of a CUHK01 file name ``NNNNMMM.png``; None for another."""
    match = CUHK01_NAME.match(name)
    camera = None if match is None else _camera_of(int(match["image"]))
    return None if camera is None else (int(match["pid"]), camera)


def read_cuhk01(root: str | Path, seed: int = 0, num_train_ids: int = 485,
                query_camera: str = "A") -> ReIDDataset:
    """Read CUHK01 with a split of the identities drawn by ``seed``."""
    if query_camera not in CAMERAS:
        raise option_error("query_camera", query_camera, "'A' or 'B' (the queries' camera)")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise option_error("seed", seed, "an integer")
    folder = require_data_dir(Path(root), "campus", "CUHK01 images NNNNMMM.png")
    samples = []
    for path in list_images(folder):
        match = CUHK01_NAME.match(path.name)
        if match is None:
            raise DatasetError(f"image {path} does not match the CUHK01 name NNNNMMM.png")
        samples.append(Sample(path, int(match["pid"]), _camera(int(match["image"]), path)))
    check_split("CUHK01", samples, folder)
    pids = sorted({s.pid for s in samples})
    if isinstance(num_train_ids, bool) or not isinstance(num_train_ids, int) \
            or not 1 <= num_train_ids < len(pids):
        raise option_error("num_train_ids", num_train_ids,
                           f"an integer in 1..{len(pids) - 1} ({folder} has {len(pids)} "
                           "identities; the others are the test identities)")
    order = np.random.default_rng(seed).permutation(len(pids))
    train_pids = {pids[i] for i in order[:num_train_ids]}
    query_cam = CAMERAS[query_camera]
    train = [s for s in samples if s.pid in train_pids]
    test = [s for s in samples if s.pid not in train_pids]
    query = [s for s in test if s.camid == query_cam]
    gallery = [s for s in test if s.camid != query_cam]
    check_split("query", query, folder)
    check_split("gallery", gallery, folder)
    check_query_in_gallery(query, gallery, folder)
    return ReIDDataset("cuhk01", relabel(train), query, gallery)
