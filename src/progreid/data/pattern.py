"""The ``folder`` dataset: any folder of images, in one of two layouts (option ``layout``).

``splits``: ``ROOT/train``, ``ROOT/query`` and ``ROOT/gallery`` (searched recursively), identity
and camera read from each image path relative to its split folder with a regex (option
``pattern``) with the named groups ``pid`` and, optionally, ``camid``. Negative identities are
junk (as Market-1501's ``-1``) and are dropped; camera numbers are mapped to 0..C-1 in sorted
order over all splits. A pattern without ``camid`` reads camera-less data: every relative path
is a camera of its own, so the same-identity-and-camera junk rule removes only the identical
image (the same relative path in ``query/`` and ``gallery/``, a query's own copy in a gallery
that holds every image). Files that are not images are ignored.

``identities``: ``ROOT/<identity>/<image>`` with a seeded query/gallery split
(:mod:`progreid.data.identities`). ``auto`` (the default) is ``splits`` when ROOT has a
``train``, ``query`` or ``gallery`` folder and ``identities`` otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

from progreid.data.identities import read_identity_folders
from progreid.data.sample import (
    DatasetError,
    ReIDDataset,
    Sample,
    check_query_in_gallery,
    check_split,
    list_images,
    option_error,
    relabel,
    require_dir,
)

DEFAULT_PATTERN = r"(?P<pid>-?\d+)_c(?P<camid>\d+)"
#: How a name matching :data:`DEFAULT_PATTERN` looks, for messages.
DEFAULT_NAMES = ("<pid>_c<cam>... (e.g. 0001_c1_0001.jpg or 0001_c1/0001.jpg; other names need "
                 "data.options.pattern)")
SPLIT_FOLDERS = ("train", "query", "gallery")
LAYOUTS = ("auto", "splits", "identities")
#: The camera of an image read by a pattern without ``camid``, until its reader assigns one.
NO_CAMERA = -1


def parse_folder_name(name: str) -> tuple[int, int] | None:
    """(identity, camera number as written) of a name matching :data:`DEFAULT_PATTERN`; None
    for another."""
    match = re.search(DEFAULT_PATTERN, name)
    return None if match is None else (int(match["pid"]), int(match["camid"]))


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern``; it must be a valid regex with the named group ``pid`` (and may have
    ``camid``)."""
    try:
        regex = re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise option_error("pattern", pattern, f"a valid regular expression ({exc})") from exc
    if "pid" not in regex.groupindex:
        raise option_error("pattern", pattern, "a regular expression with the named group pid: "
                           "(?P<pid>...) and, for data with cameras, (?P<camid>...); it lacks "
                           "the named group pid")
    return regex


def parse_images(folder: Path, regex: re.Pattern[str], recursive: bool = False,
                 names: str | None = None) -> list[Sample]:
    """Samples of the images in ``folder`` with the raw camera numbers of their names
    (:data:`NO_CAMERA` when ``regex`` has no ``camid`` group).

    Every image path (relative to ``folder``) must match ``regex``, else the error shows
    ``names``, how a valid name looks (default: the user's ``data.options.pattern``); negative
    identities are dropped. Files that are not images are ignored.
    """
    samples = []
    has_camera = "camid" in regex.groupindex
    for path in list_images(folder, recursive):
        match = regex.search(path.relative_to(folder).as_posix())
        if match is None:
            raise DatasetError(f"image {path} does not match the file name pattern "
                               f"{names or f'data.options.pattern = {regex.pattern!r}'}; "
                               f"rename it or move it out of {folder}")
        try:
            pid = int(match["pid"])
            camid = int(match["camid"]) if has_camera else NO_CAMERA
        except (TypeError, ValueError) as exc:
            captured = ", ".join(f"{group}={match[group]!r}" for group in regex.groupindex
                                 if group in ("pid", "camid"))
            raise DatasetError(f"image {path}: pattern {regex.pattern!r} captured {captured}; "
                               "expected integers") from exc
        if pid >= 0:
            samples.append(Sample(path, pid, camid))
    return samples


def _camera_key(root: Path, split: str, sample: Sample) -> int | str:
    """What identifies ``sample``'s camera: its number, or without one its path in the split."""
    if sample.camid != NO_CAMERA:
        return sample.camid
    return sample.path.relative_to(root / split).as_posix()


def read_split_folders(root: Path, regex: re.Pattern[str],
                       names: str | None = None) -> ReIDDataset:
    """Read ``ROOT/{train,query,gallery}`` with identity and camera taken from ``regex``
    (``names``: how a valid name looks, see :func:`parse_images`)."""
    splits = {}
    for split in SPLIT_FOLDERS:
        folder = require_dir(root / split, f"{split} images of a folder dataset in layout "
                                           "'splits'; one folder per identity is layout "
                                           "'identities', without these folders")
        splits[split] = parse_images(folder, regex, recursive=True, names=names)
        check_split(split, splits[split], folder)
    keys = {split: [_camera_key(root, split, s) for s in samples]
            for split, samples in splits.items()}
    index = {key: i for i, key in enumerate(sorted({k for ks in keys.values() for k in ks}))}
    train, query, gallery = ([Sample(s.path, s.pid, index[key])
                              for s, key in zip(splits[split], keys[split], strict=True)]
                             for split in SPLIT_FOLDERS)
    check_query_in_gallery(query, gallery, root)
    return ReIDDataset("folder", relabel(train), query, gallery,
                       cameras="camid" in regex.groupindex)


def _layout(root: Path, layout: str) -> str:
    """``layout`` with ``auto`` resolved; some but not all split folders (``auto``), or any
    beside layout ``identities``, are an error (a mixed layout)."""
    if layout not in LAYOUTS:
        raise option_error("layout", layout, f"one of {', '.join(LAYOUTS)}")
    present = [name for name in SPLIT_FOLDERS if (root / name).is_dir()]
    missing = [name for name in SPLIT_FOLDERS if name not in present]
    if layout == "auto" and present and missing:
        raise DatasetError(f"{root} mixes layouts: it has {', '.join(present)}/ but not "
                           f"{', '.join(missing)}/; layout 'splits' needs all three folders, "
                           "layout 'identities' (ROOT/<identity>/<image>) none of them")
    if layout == "auto":
        return "splits" if present else "identities"
    if layout == "identities" and present:
        raise DatasetError(f"{root} mixes layouts: layout 'identities' expects only "
                           f"ROOT/<identity>/ folders, but it has {', '.join(present)}/; use "
                           "layout 'splits' for train/query/gallery folders, or move them out")
    return layout


def read_folder(root: str | Path, pattern: str | None = None, layout: str = "auto",
                split_seed: int | None = None, test_fraction: float | None = None,
                split_file: str | None = None) -> ReIDDataset:
    """Read a folder dataset in ``layout`` (see the module docstring). ``pattern`` (default
    :data:`DEFAULT_PATTERN`) applies to layout ``splits``; ``split_seed``, ``test_fraction``
    and ``split_file`` to layout ``identities``."""
    root = require_dir(Path(root), "dataset folder")
    layout = _layout(root, layout)
    options = {"pattern": pattern} if layout == "identities" else {
        "split_seed": split_seed, "test_fraction": test_fraction, "split_file": split_file}
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise DatasetError(f"data.options.{given[0]} does not apply to layout {layout!r} of "
                           f"{root}; remove it from data.options")
    if layout == "identities":
        return read_identity_folders(root, split_seed, test_fraction, split_file)
    return read_split_folders(root, compile_pattern(pattern or DEFAULT_PATTERN),
                              None if pattern else DEFAULT_NAMES)
