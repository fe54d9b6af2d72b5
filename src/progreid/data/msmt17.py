"""MSMT17: list files ``list_{train,val,query,gallery}.txt`` in ROOT with lines
``relative/path pid``; train/val paths are relative to ``ROOT/train``, query/gallery paths to
``ROOT/test`` (``mask_train_v2`` / ``mask_test_v2`` for MSMT17_V2). The camera is the third
field of the file name (``0000_000_01_0303morning_0015_0.jpg`` is camera 01). Train and val
together form the training set (32,621 images in MSMT17_V1), as in the standard protocol."""

from __future__ import annotations

import re
from pathlib import Path

from progreid.data.sample import (
    DatasetError,
    ReIDDataset,
    Sample,
    check_images_exist,
    check_query_in_gallery,
    check_split,
    relabel,
    require_dir,
    root_fix,
)

MSMT17_NAME = re.compile(r"^(?P<pid>\d+)_\d+_(?P<camid>\d+)_")
IMAGE_FOLDERS = (("train", "test"), ("mask_train_v2", "mask_test_v2"))


def parse_msmt17_name(name: str) -> tuple[int, int] | None:
    """(identity, 0-based camera) of an MSMT17 file name ``PPPP_NNN_CC_...``; None for another
    (the list files hold the identities; the names carry them too)."""
    match = MSMT17_NAME.match(name)
    if match is None or int(match["camid"]) < 1:
        return None
    return int(match["pid"]), int(match["camid"]) - 1


def read_list(list_path: Path, images: Path) -> list[Sample]:
    """Samples of one list file; cameras 0-based from the file names."""
    if not list_path.is_file():
        raise DatasetError(f"missing MSMT17 list file {list_path}")
    samples = []
    for number, line in enumerate(list_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"{list_path}, line {number}"
        if len(fields) != 2 or not fields[1].isdigit():
            raise DatasetError(f"{where}: expected 'relative/path pid', got {line!r}")
        match = MSMT17_NAME.match(Path(fields[0]).name)
        if match is None or int(match["camid"]) < 1:
            raise DatasetError(f"{where}: file name {fields[0]!r} does not carry a camera "
                               "(expected PPPP_NNN_CC_..., cameras from 01)")
        samples.append(Sample(images / fields[0], int(fields[1]), int(match["camid"]) - 1))
    return samples


def read_msmt17(root: str | Path) -> ReIDDataset:
    """Read MSMT17 (V1 or V2 folder names) from its list files."""
    root = require_dir(Path(root), "MSMT17 dataset folder")
    found = [pair for pair in IMAGE_FOLDERS if (root / pair[0]).is_dir()]
    if not found:
        raise DatasetError(f"missing folder {root / 'train'} (MSMT17 training images; or "
                           f"{root / 'mask_train_v2'} for MSMT17_V2); {root_fix(root, 'train')}")
    train_dir, test_dir = (root / name for name in found[0])
    require_dir(test_dir, "MSMT17 test images")
    splits = {
        "train": read_list(root / "list_train.txt", train_dir)
        + read_list(root / "list_val.txt", train_dir),
        "query": read_list(root / "list_query.txt", test_dir),
        "gallery": read_list(root / "list_gallery.txt", test_dir),
    }
    for split, samples in splits.items():
        check_split(split, samples, root / f"list_{split}.txt")
        check_images_exist(samples, root / f"list_{split}.txt")
    check_query_in_gallery(splits["query"], splits["gallery"], root)
    return ReIDDataset("msmt17", relabel(splits["train"]), splits["query"], splits["gallery"])
