"""Market-1501 and DukeMTMC-reID (same folder layout; the synthetic pedestrians use it too).

Folders ``bounding_box_train`` (train), ``bounding_box_test`` (gallery), ``query`` and optional
``gt_bbox`` (multi-query). Names ``PPPP_cCsS_FFFFFF_NN.jpg`` (Market) or ``PPPP_cC_fFFFFFFF.jpg``
(Duke): identity ``-1`` (junk) is dropped, identity ``0`` (distractors) stays in the gallery, and
cameras become 0-based. Any other image name is an error; non-image files are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from progreid.data.pattern import parse_images
from progreid.data.sample import (
    DatasetError,
    ReIDDataset,
    Sample,
    check_query_in_gallery,
    check_split,
    option_error,
    relabel,
    require_data_dir,
    require_dir,
)

MARKET_NAME = re.compile(r"^(?P<pid>-?\d+)_c(?P<camid>\d+)(?:s\d+)?_[^/]+$")
#: How a name matching :data:`MARKET_NAME` looks, for messages.
MARKET_NAMES = ("<pid>_c<cam>s<seq>_<frame>.jpg of the Market-1501 layout (e.g. "
                "0002_c1s1_000451_03.jpg; DukeMTMC: 0001_c2_f0046182.jpg)")
FOLDERS = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query"}
MULTI_QUERY_FOLDER = "gt_bbox"
#: Identity 0: the gallery's distractors (kept as negatives; never a query).
DISTRACTOR_PID = 0


def parse_market_name(name: str) -> tuple[int, int] | None:
    """(identity, 0-based camera) of a Market-layout file name; None for another name."""
    match = MARKET_NAME.match(name)
    return None if match is None else (int(match["pid"]), int(match["camid"]) - 1)


def _read_split(folder: Path) -> list[Sample]:
    """Samples of one Market-layout folder with 0-based cameras."""
    samples = []
    for s in parse_images(folder, MARKET_NAME, names=MARKET_NAMES):
        if s.camid < 1:
            raise DatasetError(f"image {s.path}: camera c{s.camid} is invalid; Market-layout "
                               "cameras are numbered from c1")
        samples.append(Sample(s.path, s.pid, s.camid - 1))
    return samples


def _first_identities(samples: list[Sample], count: int | None, option: str,
                      name: str) -> set[int]:
    """The ``count`` smallest identities (other than the distractor 0) of ``samples``; all of
    them when ``count`` is None."""
    pids = sorted({s.pid for s in samples} - {DISTRACTOR_PID})
    if count is None:
        return set(pids)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(pids):
        raise option_error(option, count, f"an integer in 1..{len(pids)} ({name} has "
                                          f"{len(pids)}); remove it to use them all")
    return set(pids[:count])


def read_market(root: str | Path, name: str = "market1501", train_ids: int | None = None,
                test_ids: int | None = None) -> ReIDDataset:
    """Read a dataset in the Market-1501 layout; ``multi_query`` holds the ``gt_bbox`` images of
    the query identities (Market-1501 multi-query protocol), empty without that folder.

    ``train_ids`` / ``test_ids`` keep the training images of the first (smallest) that many
    training identities and the query and gallery images of the first that many query
    identities, with every distractor: a quick run on a subset of the benchmark."""
    root = require_dir(Path(root), f"{name} dataset folder")
    splits = {}
    for split, folder_name in FOLDERS.items():
        folder = require_data_dir(root, folder_name, f"{split} images of {name}")
        splits[split] = _read_split(folder)
        check_split(split, splits[split], folder)
    check_query_in_gallery(splits["query"], splits["gallery"], root)
    kept_train = _first_identities(splits["train"], train_ids, "train_ids", name)
    kept_test = _first_identities(splits["query"], test_ids, "test_ids", name) | {DISTRACTOR_PID}
    splits = {"train": [s for s in splits["train"] if s.pid in kept_train],
              **{split: [s for s in splits[split] if s.pid in kept_test]
                 for split in ("query", "gallery")}}
    multi_query: list[Sample] = []
    if (root / MULTI_QUERY_FOLDER).is_dir():
        query_pids = {s.pid for s in splits["query"]}
        multi_query = [s for s in _read_split(root / MULTI_QUERY_FOLDER) if s.pid in query_pids]
    return ReIDDataset(name, relabel(splits["train"]), splits["query"], splits["gallery"],
                       multi_query)
