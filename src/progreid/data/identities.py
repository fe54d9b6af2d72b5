"""One folder per identity, ``ROOT/<identity>/<image>``: the layout most people's own data has.

The folders carry identities and nothing else: no cameras, no train / query / gallery split.
The protocol for such data:

- **Identities** are the sub-folder names of ROOT in sorted (Python string) order; the i-th name
  is person id i, so names (``alice``) and numbers (``0042``) both work and the ids do not depend
  on the order the file system lists them in.
- **Split**: a numpy generator seeded with ``split_seed`` permutes the identities; the first
  ``round(test_fraction x N)`` (at least 1, at most N - 1) are test identities, the others train.
  Going through the test identities in id order, the same generator draws one image of each
  identity with two or more images as its query; its other images are gallery. A test identity
  with a single image cannot be a query (no gallery image could match it): its image joins the
  gallery as a distractor.
- **No cameras**: every image is a camera of its own (camera id = its index among the sorted
  relative paths), so the Market-1501 junk rule (same identity and same camera) removes only the
  identical image, and query and gallery images are distinct files: every other image of the
  query's identity is a match, none is junk. (Byte-identical copies under two names would count
  as matches; the scan before training refuses them, ``data.on_bad_image``.)
- **Saved with the run**: the split is a JSON record (:class:`Split`) that ``progreid train``
  writes into the run folder as ``split.json``; ``evaluate`` and ``report`` read the dataset
  through it (reader option ``split_file``), so evaluation uses the training run's split even
  after images are added to the folders.

Refused, each with one message naming the file or folder and the fix: images directly in ROOT,
folders inside an identity folder, files that are not images (hidden files, ``Thumbs.db`` and
``desktop.ini`` are ignored), empty identity folders, fewer than two identities, and a split
without any query.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from progreid.data.sample import (
    IMAGE_EXTENSIONS,
    DatasetError,
    ReIDDataset,
    Sample,
    check_images_exist,
    check_query_in_gallery,
    option_error,
    relabel,
)
from progreid.utils.io import atomic_write_json

SPLIT_NAME = "split.json"
SPLIT_FORMAT = "progreid-split-1"
#: Files of the operating system that an identity folder may hold besides its images.
IGNORED_FILES = frozenset({"thumbs.db", "desktop.ini"})
EXTENSIONS = ", ".join(sorted(IMAGE_EXTENSIONS))


@dataclass(frozen=True)
class Split:
    """A drawn split: the identity names (id = index) and image paths relative to ROOT."""

    seed: int
    test_fraction: float
    identities: list[str]
    train: list[str]
    query: list[str]
    gallery: list[str]

    def record(self) -> dict[str, Any]:
        """The JSON record of ``split.json``."""
        return {"format": SPLIT_FORMAT, "layout": "identities", **asdict(self)}


def _ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in IGNORED_FILES


def scan_identities(root: Path) -> dict[str, list[str]]:
    """Each identity folder's name and its images (sorted paths relative to ``root``)."""
    entries = sorted(p for p in root.iterdir() if not _ignored(p))
    loose = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if loose:
        raise DatasetError(f"image {loose[0]} lies directly in {root}; layout 'identities' "
                           "expects ROOT/<identity>/<image>: move it into its identity's folder")
    identities = {}
    for folder in (p for p in entries if p.is_dir()):
        images = []
        for path in sorted(p for p in folder.iterdir() if not _ignored(p)):
            if path.is_dir():
                raise DatasetError(f"{path} is a folder inside identity folder {folder}; layout "
                                   "'identities' expects images directly in ROOT/<identity>/: "
                                   "move its images up or remove it")
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise DatasetError(f"{path} is not an image (expected {EXTENSIONS}); move it out "
                                   "of the identity folder")
            images.append(path.relative_to(root).as_posix())
        if not images:
            raise DatasetError(f"identity folder {folder} holds no image; add its images "
                               f"({EXTENSIONS}) or remove the folder")
        identities[folder.name] = images
    if len(identities) < 2:
        raise DatasetError(f"{root} holds {len(identities)} identity folder(s); layout "
                           "'identities' needs ROOT/<identity>/<image> with at least two "
                           "identities (one to train on, one to test)")
    return identities


def draw_split(identities: dict[str, list[str]], seed: int, test_fraction: float) -> Split:
    """The seeded split of the module docstring: test identities, then one query of each."""
    names = sorted(identities)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    num_test = min(max(round(test_fraction * len(names)), 1), len(names) - 1)
    train, query, gallery = [], [], []
    for i in sorted(order[num_test:]):
        train += identities[names[i]]
    for i in sorted(order[:num_test]):
        images = identities[names[i]]
        chosen = int(rng.integers(len(images))) if len(images) > 1 else -1
        query += [p for j, p in enumerate(images) if j == chosen]
        gallery += [p for j, p in enumerate(images) if j != chosen]
    return Split(seed, test_fraction, names, train, query, gallery)


def load_split(path: Path) -> Split:
    """The split saved in ``path`` (a ``split.json``), checked against its format."""
    fix = "delete it to draw the split again, or name another split_file"
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"split_file {path} cannot be read as JSON ({exc}); {fix}") from exc
    if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
        raise DatasetError(f"split_file {path} is not a progreid split (expected \"format\": "
                           f"\"{SPLIT_FORMAT}\"); {fix}")
    lists = ("identities", "train", "query", "gallery")
    bad = [key for key in lists if not isinstance(data.get(key), list)
           or not all(isinstance(item, str) for item in data[key])]
    if bad:
        raise DatasetError(f"split_file {path}: {', '.join(bad)} must be lists of strings; {fix}")
    return Split(data.get("seed"), data.get("test_fraction"), *(data[key] for key in lists))


def dataset_from_split(root: Path, split: Split, where: Path | str) -> ReIDDataset:
    """The camera-less dataset of ``split`` (paths under ``root``); ``where`` names its source."""
    pids = {name: pid for pid, name in enumerate(split.identities)}
    paths = split.train + split.query + split.gallery
    unknown = [p for p in paths if p.split("/")[0] not in pids]
    if unknown:
        raise DatasetError(f"{where}: image {unknown[0]} is not in a listed identity folder; "
                           "every image must lie in ROOT/<identity>/")
    if len(set(paths)) != len(paths):
        raise DatasetError(f"{where}: an image is listed twice; train, query and gallery must be "
                           "disjoint")
    cameras = {p: camid for camid, p in enumerate(sorted(paths))}

    def samples(listed: list[str]) -> list[Sample]:
        return [Sample(root / p, pids[p.split("/")[0]], cameras[p]) for p in listed]

    train, query, gallery = samples(split.train), samples(split.query), samples(split.gallery)
    if not query or not train:
        missing = "query image" if not query else "training image"
        raise DatasetError(f"{where}: the split has no {missing}; a query needs a test identity "
                           "with two or more images and training needs another identity: add "
                           "images or identities, or change split_seed / test_fraction")
    check_query_in_gallery(query, gallery, where)
    check_images_exist(train + query + gallery, where)
    return ReIDDataset("folder", relabel(train), query, gallery, cameras=False,
                       split=split.record())


def read_identity_folders(root: Path, split_seed: int | None = None,
                          test_fraction: float | None = None,
                          split_file: str | Path | None = None) -> ReIDDataset:
    """Read ``ROOT/<identity>/<image>`` with the split saved in ``split_file``, or else drawn
    with ``split_seed`` (default 0) and ``test_fraction`` (default 0.5)."""
    if split_file is not None:
        return dataset_from_split(root, load_split(Path(split_file)), split_file)
    seed = 0 if split_seed is None else split_seed
    fraction = 0.5 if test_fraction is None else test_fraction
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise option_error("split_seed", seed, "an integer")
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) \
            or not 0 < fraction < 1:
        raise option_error("test_fraction", fraction, "a number between 0 and 1 (the share of "
                           "identities held out for testing)")
    split = draw_split(scan_identities(root), seed, float(fraction))
    return dataset_from_split(root, split, root)


def save_split(dataset: ReIDDataset, run_dir: Path) -> None:
    """Write the split ``dataset`` was drawn with into ``run_dir`` (``split.json``), atomically;
    a dataset whose folders are the split removes a stale one."""
    path = Path(run_dir) / SPLIT_NAME
    if dataset.split is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write_json(path, dataset.split)
