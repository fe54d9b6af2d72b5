"""CUHK03 detected / labeled with the 767/700 protocol (Zhong et al., CVPR 2017 split files).

Layout: ``ROOT/images_{detected,labeled}/*.png`` and the split files
``cuhk03_new_protocol_config_{detected,labeled}.mat`` (in ROOT or ``split_dir``). Image names
follow the split files: ``1_001_1_01.png`` = camera pair 1, person 001, camera 1, image 01
(images 01-05 are camera 1, 06-10 camera 2). :func:`prepare_cuhk03` writes that layout once
from the official ``cuhk-03.mat``. Camera ids are the split files' ``camId`` (1 or 2, the camera
within the pair) made 0-based; identities are their ``labels``.
"""

from __future__ import annotations

import importlib
import re
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from progreid.data.sample import (
    DatasetError,
    ReIDDataset,
    Sample,
    check_images_exist,
    check_query_in_gallery,
    check_split,
    option_error,
    relabel,
    require_data_dir,
    require_dir,
)
from progreid.utils.io import atomic_path
from progreid.utils.progress import progress

VARIANTS = ("detected", "labeled")
#: The image names :func:`prepare_cuhk03` writes: camera pair, person, camera (1-2), image.
CUHK03_NAME = re.compile(r"^(?P<pair>\d+)_(?P<person>\d{3})_(?P<camid>[12])_(?P<image>\d{2})\.png$")
SPLIT_FIELDS = ("filelist", "labels", "camId", "train_idx", "query_idx", "gallery_idx")


def parse_cuhk03_name(name: str) -> tuple[int, int] | None:
    """(identity, 0-based camera) of a CUHK03 image name ``1_001_1_01.png``; None for another.
    The identity is pair x 1000 + person (the split files' labels are not in the names)."""
    match = CUHK03_NAME.match(name)
    if match is None:
        return None
    return int(match["pair"]) * 1000 + int(match["person"]), int(match["camid"]) - 1


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"CUHK03 needs the '{module}' package: "
                          "pip install 'progreid[cuhk03]'") from exc


def split_file(split_dir: Path, variant: str) -> Path:
    """Path of the protocol file of ``variant`` in ``split_dir``."""
    return split_dir / f"cuhk03_new_protocol_config_{variant}.mat"


def load_split(path: Path) -> dict[str, Any]:
    """The fields of one protocol file (MATLAB v5, read with scipy)."""
    if not path.is_file():
        raise DatasetError(f"missing CUHK03 split file {path}")
    try:
        mat = _require("scipy.io").loadmat(str(path))
    except (OSError, ValueError, NotImplementedError) as exc:
        raise DatasetError(f"cannot read CUHK03 split file {path}: {exc}") from exc
    missing = [f for f in SPLIT_FIELDS if f not in mat]
    if missing:
        raise DatasetError(f"CUHK03 split file {path} lacks the field(s) {', '.join(missing)}; "
                           f"expected {', '.join(SPLIT_FIELDS)}")
    return mat


def read_cuhk03(root: str | Path, variant: str = "detected",
                split_dir: str | Path | None = None) -> ReIDDataset:
    """Read CUHK03 ``variant`` with the 767/700 protocol; indices in the file are 1-based."""
    if variant not in VARIANTS:
        raise option_error("variant", variant, f"one of {', '.join(VARIANTS)}")
    root = require_dir(Path(root), "CUHK03 dataset folder")
    path = split_file(Path(split_dir) if split_dir is not None else root, variant)
    mat = load_split(path)
    images = require_data_dir(root, f"images_{variant}", f"CUHK03 {variant} images; create "
                              "it with `progreid prepare cuhk03`")
    names = [str(np.asarray(cell).ravel()[0]) for cell in mat["filelist"].ravel()]
    labels = mat["labels"].ravel().astype(np.int64)
    cams = mat["camId"].ravel().astype(np.int64)
    if not len(names) == len(labels) == len(cams):
        raise DatasetError(f"CUHK03 split file {path}: filelist, labels and camId differ in "
                           f"length ({len(names)}, {len(labels)}, {len(cams)})")

    def take(field: str) -> list[Sample]:
        idx = mat[field].ravel().astype(np.int64)
        if idx.size and (idx.min() < 1 or idx.max() > len(names)):
            raise DatasetError(f"CUHK03 split file {path}: {field} has indices outside "
                               f"1..{len(names)}")
        return [Sample(images / names[i - 1], int(labels[i - 1]), int(cams[i - 1]) - 1)
                for i in idx]

    train, query, gallery = take("train_idx"), take("query_idx"), take("gallery_idx")
    for split, samples in (("train", train), ("query", query), ("gallery", gallery)):
        check_split(split, samples, path)
    check_query_in_gallery(query, gallery, path)
    check_images_exist(train + query + gallery, path)
    return ReIDDataset(f"cuhk03-{variant}", relabel(train), query, gallery)


def _extract_variant(mat: Any, variant: str, folder: Path) -> None:
    """Write the images of one group of the official file; existing files are kept.

    MATLAB v7.3 stores the group as a cell per camera pair, each a (persons x 10) cell of
    H x W x 3 uint8 images, all transposed in HDF5 and held as object references; empty cells
    (missing images) are skipped.
    """
    if variant not in mat:
        raise DatasetError(f"{mat.filename} has no '{variant}' group; expected the official "
                           "cuhk-03.mat")
    pairs = [mat[ref][()].T for ref in np.ravel(mat[variant][()])]
    cells = [(pair, person, image, ref) for pair, persons in enumerate(pairs)
             for person, row in enumerate(persons) for image, ref in enumerate(row)]
    for pair, person, image, ref in progress(cells, f"preparing cuhk03 {variant}"):
        pixels = mat[ref][()]
        if pixels.ndim != 3:
            continue
        if pixels.dtype != np.uint8 or pixels.shape[0] != 3:
            raise DatasetError(f"{mat.filename}: {variant} pair {pair + 1} person {person + 1} "
                               f"image {image + 1} has shape {pixels.shape[::-1]} "
                               f"{pixels.dtype}; expected H x W x 3 uint8")
        camera = 1 if image < 5 else 2
        target = folder / f"{pair + 1}_{person + 1:03d}_{camera}_{image + 1:02d}.png"
        if not target.exists():
            with atomic_path(target) as tmp:
                Image.fromarray(np.ascontiguousarray(pixels.T)).save(tmp, format="PNG")


def prepare_cuhk03(raw_mat_path: str | Path, split_dir: str | Path,
                   out_dir: str | Path) -> Path:
    """Extract the detected and labeled images of the official ``cuhk-03.mat`` into ``out_dir``.

    Also copies both split files there, so ``read_cuhk03(out_dir, variant)`` works without
    ``split_dir``; finally reads both variants to check every listed image exists. Re-running
    keeps the images already written (each is written atomically).
    """
    h5py = _require("h5py")
    raw, out = Path(raw_mat_path), Path(out_dir)
    splits = {variant: split_file(Path(split_dir), variant) for variant in VARIANTS}
    for path in splits.values():
        load_split(path)
    if not raw.is_file():
        raise DatasetError(f"missing CUHK03 raw file {raw} (the official cuhk-03.mat)")
    try:
        mat = h5py.File(raw, "r")
    except OSError as exc:
        raise DatasetError(f"{raw} is not a MATLAB v7.3 (HDF5) file: {exc}") from exc
    with mat:
        for variant in VARIANTS:
            _extract_variant(mat, variant, out / f"images_{variant}")
    for variant, path in splits.items():
        target = split_file(out, variant)
        if not target.exists() or not target.samefile(path):
            with atomic_path(target) as tmp:
                shutil.copyfile(path, tmp)
        read_cuhk03(out, variant)
    return out
