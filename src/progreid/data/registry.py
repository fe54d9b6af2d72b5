"""Dataset readers by name: ``build_dataset(name, root, **options)`` and a PLA Table 1 summary."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from progreid.data.cuhk01 import parse_cuhk01_name, read_cuhk01
from progreid.data.cuhk03 import parse_cuhk03_name, read_cuhk03
from progreid.data.identities import SPLIT_NAME
from progreid.data.market import parse_market_name, read_market
from progreid.data.msmt17 import parse_msmt17_name, read_msmt17
from progreid.data.pattern import parse_folder_name, read_folder
from progreid.data.sample import DatasetError, MisplacedRootError, ReIDDataset, require_dir

Reader = Callable[..., ReIDDataset]


def _market_layout(name: str) -> Reader:
    def read(root: str | Path, train_ids: int | None = None,
             test_ids: int | None = None) -> ReIDDataset:
        return read_market(root, name, train_ids, test_ids)

    return read


READERS: dict[str, Reader] = {
    "market1501": _market_layout("market1501"),
    "dukemtmc": _market_layout("dukemtmc"),
    "cuhk03": read_cuhk03,
    "cuhk01": read_cuhk01,
    "msmt17": read_msmt17,
    "folder": read_folder,
    "synthetic": _market_layout("synthetic"),
}
DATASET_NAMES = tuple(READERS)
#: (identity, camera) from one file name in each dataset's layout, None for a name that is not
#: of that layout: how ``progreid index --name`` labels the images of a gallery.
NameParser = Callable[[str], tuple[int, int] | None]
NAME_PARSERS: dict[str, NameParser] = {
    "market1501": parse_market_name,
    "dukemtmc": parse_market_name,
    "cuhk03": parse_cuhk03_name,
    "cuhk01": parse_cuhk01_name,
    "msmt17": parse_msmt17_name,
    "folder": parse_folder_name,
    "synthetic": parse_market_name,
}


def reader_options(name: str) -> dict[str, Any]:
    """The options a reader takes, with their defaults."""
    params = list(inspect.signature(READERS[name]).parameters.values())[1:]
    return {p.name: p.default for p in params}


def build_dataset(name: str, root: str | Path, **options: Any) -> ReIDDataset:
    """Read dataset ``name`` from ``root``; unknown names and options are errors naming them."""
    if name not in READERS:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    allowed = reader_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = (f"its options are {', '.join(allowed)}" if allowed else "it takes no options")
        raise DatasetError(f"{', '.join('data.options.' + key for key in unknown)}: dataset "
                           f"{name!r} has no option {', '.join(map(repr, unknown))}; {takes}; "
                           "remove it from data.options")
    return READERS[name](root, **options)


#: The layouts :func:`detect_dataset` tries, in order: dukemtmc and synthetic share market1501's
#: and folder reads almost any folder of images, so it comes last.
DETECTED = ("market1501", "cuhk03", "cuhk01", "msmt17", "folder")


def detect_dataset(root: str | Path, **options: Any) -> tuple[str, ReIDDataset]:
    """The name and dataset of the first layout of :data:`DETECTED` (taking ``options``) that
    reads ``root``. None reads it: the error of a layout whose root was one level off
    (:class:`MisplacedRootError`), else one naming the layouts tried."""
    require_dir(Path(root), "dataset folder")
    names = [name for name in DETECTED if set(options) <= set(reader_options(name))]
    errors: dict[str, DatasetError] = {}
    for name in names:
        try:
            return name, build_dataset(name, root, **options)
        except DatasetError as exc:
            errors[name] = exc
    for name, exc in errors.items():
        if isinstance(exc, MisplacedRootError):
            raise MisplacedRootError(f"{name}: {exc}") from exc
    taking = f" that take {', '.join(sorted(options))}" if options else ""
    raise DatasetError(f"{root} is in none of the dataset layouts{taking} "
                       f"({', '.join(names) or 'none'})")


def build_run_dataset(name: str, root: str | Path, options: dict[str, Any],
                      run_dir: str | Path | None) -> ReIDDataset:
    """:func:`build_dataset` for a run: with the split the run saved (``RUN/split.json``) when
    there is one and the reader takes a ``split_file`` the options do not already name."""
    saved = Path(run_dir) / SPLIT_NAME if run_dir is not None else None
    if (saved is not None and saved.is_file() and name in READERS
            and "split_file" in reader_options(name) and "split_file" not in options):
        options = {**options, "split_file": str(saved)}
    return build_dataset(name, root, **options)


def datasets_table(dataset: ReIDDataset) -> str:
    """A plain-text table like PLA Table 1: identities, images and cameras per split (``-``
    for a dataset without cameras)."""
    header = (dataset.name, "identities", "images", "cameras")
    rows = [(split, f"{ids:,}", f"{images:,}", f"{cams:,}" if dataset.cameras else "-")
            for split, ids, images, cams in dataset.summary()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in [header, *rows]]
    return "\n".join(lines)
