"""Any folder of images whose paths carry identity and camera, read with a configurable regex.

Layout: ``ROOT/train``, ``ROOT/query`` and ``ROOT/gallery`` (searched recursively). The regex is
searched in each image path relative to its split folder and must have the named groups ``pid``
and ``camid``. Negative identities are junk (as Market-1501's ``-1``) and are dropped; camera
numbers are mapped to 0..C-1 in sorted order over all splits.
"""

from __future__ import annotations

import re
from pathlib import Path

from progreid.data.sample import (
    DatasetError,
    ReIDDataset,
    Sample,
    check_query_in_gallery,
    check_split,
    list_images,
    relabel,
    require_dir,
)

DEFAULT_PATTERN = r"(?P<pid>-?\d+)_c(?P<camid>\d+)"
SPLIT_FOLDERS = ("train", "query", "gallery")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern``; it must be a valid regex with named groups ``pid`` and ``camid``."""
    try:
        regex = re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise DatasetError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from exc
    missing = sorted({"pid", "camid"} - set(regex.groupindex))
    if missing:
        raise DatasetError(f"pattern {pattern!r} lacks the named group(s) {', '.join(missing)}; "
                           "it needs (?P<pid>...) and (?P<camid>...)")
    return regex


def parse_images(folder: Path, regex: re.Pattern[str], recursive: bool = False) -> list[Sample]:
    """Samples of the images in ``folder`` with the raw camera numbers of their names.

    Every image path (relative to ``folder``) must match ``regex``; negative identities are
    dropped. Files that are not images are ignored.
    """
    samples = []
    for path in list_images(folder, recursive):
        match = regex.search(path.relative_to(folder).as_posix())
        if match is None:
            raise DatasetError(f"image {path} does not match the file name pattern "
                               f"{regex.pattern!r}")
        try:
            pid, camid = int(match["pid"]), int(match["camid"])
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"image {path}: pattern {regex.pattern!r} captured "
                               f"pid={match['pid']!r}, camid={match['camid']!r}; expected "
                               "integers") from exc
        if pid >= 0:
            samples.append(Sample(path, pid, camid))
    return samples


def read_folder(root: str | Path, pattern: str = DEFAULT_PATTERN) -> ReIDDataset:
    """Read ``ROOT/{train,query,gallery}`` with identity and camera taken from ``pattern``."""
    root = require_dir(Path(root), "dataset folder")
    regex = compile_pattern(pattern)
    splits = {}
    for split in SPLIT_FOLDERS:
        folder = require_dir(root / split, f"{split} images of a folder dataset")
        splits[split] = parse_images(folder, regex, recursive=True)
        check_split(split, splits[split], folder)
    cameras = sorted({s.camid for samples in splits.values() for s in samples})
    index = {camid: i for i, camid in enumerate(cameras)}
    train, query, gallery = ([Sample(s.path, s.pid, index[s.camid]) for s in splits[split]]
                             for split in SPLIT_FOLDERS)
    check_query_in_gallery(query, gallery, root)
    return ReIDDataset("folder", relabel(train), query, gallery)
