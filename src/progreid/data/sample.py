"""The dataset record every reader returns: three lists of (image path, person id, camera id).

Also the checks and folder helpers the readers share, so each rule lives in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from progreid.errors import DatasetError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class Sample:
    """One image: its path, person identity and camera (0-based camera index)."""

    path: Path
    pid: int
    camid: int


@dataclass
class ReIDDataset:
    """Train, query and gallery splits of one benchmark.

    ``train`` identities are relabelled 0..N-1 (see :func:`relabel`); query and gallery keep the
    original identities so that evaluation compares them directly. ``multi_query`` holds the
    extra query images of the Market-1501 multi-query protocol (its ``gt_bbox`` folder), if any.
    A dataset without ``cameras`` gives every image a camera of its own (so only the identical
    image is junk); ``split`` is the query/gallery split a reader drew, as the JSON record the
    run folder saves (``split.json``), or None when the folders are the split.
    """

    name: str
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    multi_query: list[Sample] = field(default_factory=list)
    cameras: bool = True
    split: dict[str, Any] | None = None

    @property
    def num_train_pids(self) -> int:
        return len({s.pid for s in self.train})

    def summary(self) -> list[tuple[str, int, int, int]]:
        """Rows (split, identities, images, cameras) as in PLA Table 1.

        A ``multi-query`` row follows when the dataset has multi-query images; cameras are 0
        for a dataset without cameras.
        """
        splits = [("train", self.train), ("query", self.query), ("gallery", self.gallery)]
        if self.multi_query:
            splits.append(("multi-query", self.multi_query))
        return [(split, len({s.pid for s in samples}), len(samples),
                 len({s.camid for s in samples}) if self.cameras else 0)
                for split, samples in splits]


def relabel(samples: Iterable[Sample]) -> list[Sample]:
    """Map the identities of ``samples`` to 0..N-1 in order of sorted original id."""
    samples = list(samples)
    mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in samples}))}
    return [Sample(s.path, mapping[s.pid], s.camid) for s in samples]


def check_split(name: str, samples: Sequence[Sample], where: Path | str) -> None:
    """Fail with a clear message when a split is empty."""
    if not samples:
        raise DatasetError(f"{name} split is empty: no images found in {where}")


def check_query_in_gallery(query: Sequence[Sample], gallery: Sequence[Sample],
                           where: Path | str) -> None:
    """Every query identity must appear in the gallery, else evaluation is meaningless."""
    gallery_pids = {s.pid for s in gallery}
    missing = sorted({s.pid for s in query} - gallery_pids)
    if missing:
        shown = ", ".join(str(p) for p in missing[:10])
        raise DatasetError(
            f"{len(missing)} query identities have no gallery image in {where} "
            f"(e.g. {shown}); every query identity must appear in the gallery"
        )


def check_images_exist(samples: Sequence[Sample], where: Path | str) -> None:
    """Every listed image must be a file; name the first missing ones."""
    missing = [s.path for s in samples if not s.path.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5])
        raise DatasetError(f"{len(missing)} images listed by {where} do not exist (e.g. {shown})")


def require_dir(folder: Path, what: str) -> Path:
    """Return ``folder`` if it is a directory, else fail naming it and what it should hold."""
    if not folder.is_dir():
        raise DatasetError(f"missing folder {folder} ({what})")
    return folder


#: How to pass another dataset root, for messages.
ROOT_SETTING = "data.root, e.g. --set data.root=DIR"


class MisplacedRootError(DatasetError):
    """A dataset root one level off: the folder it should hold, or a folder that holds it."""


def _level_fix(root: Path, name: str) -> str | None:
    """The root to pass instead of ``root`` when it is one level off (see :func:`root_fix`)."""
    if root.name == name and root.is_dir():
        return (f"{root} is the {name}/ folder itself: pass its parent {root.parent} as the "
                f"dataset root ({ROOT_SETTING.replace('DIR', str(root.parent))})")
    holders = sorted(child for child in root.iterdir() if (child / name).is_dir()) \
        if root.is_dir() else []
    if holders:
        return (f"pass {holders[0]}, which holds {name}/, as the dataset root "
                f"({ROOT_SETTING.replace('DIR', str(holders[0]))})")
    return None


def root_fix(root: Path, name: str) -> str:
    """How to fix a dataset ``root`` that lacks its sub-folder ``name``: pass its parent when
    ``root`` is that folder itself, the sub-folder of ``root`` that holds it when there is one
    (a root one level off), else a folder that holds ``name/``."""
    level = _level_fix(root, name)
    if level:
        return level
    absent = "" if root.is_dir() else (
        f"{root} does not exist" + ("" if root.is_absolute() else
                                    f" (relative to the working folder {Path.cwd()})") + "; ")
    return f"{absent}the dataset root must be the folder that holds {name}/ ({ROOT_SETTING})"


def require_data_dir(root: Path, name: str, what: str) -> Path:
    """``root / name``, a folder the dataset root must hold; when it is missing the error says
    which root to pass (:func:`root_fix`): a :class:`MisplacedRootError` when ``root`` is one
    level off."""
    if not (root / name).is_dir():
        error = MisplacedRootError if _level_fix(root, name) else DatasetError
        raise error(f"missing folder {root / name} ({what}); {root_fix(root, name)}")
    return root / name


def option_error(key: str, value: Any, expected: str) -> DatasetError:
    """The error of a dataset reader option (``data.options.KEY``) with a bad ``value``."""
    return DatasetError(f"data.options.{key} = {value!r}: expected {expected}")


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files of ``folder`` in sorted order; other files (Thumbs.db, notes) are ignored."""
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
