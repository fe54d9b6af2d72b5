"""A gallery index on disk: embeddings of a folder of images, with their files and identities.

Layout of ``INDEX_DIR``::

    manifest.json        format, model, metric, dimension, items (path, pid, camid), shards, ann,
                         skipped (image files left out, with why), naming (the dataset whose
                         file names give the items' and queries' identities and cameras)
    features/00000.npy   float32 embeddings, one shard per build or append
    ann-00001.faiss      FAISS IVF index over all items (large galleries only), named after the
                         number of shards it covers

A new index is built in a temporary folder renamed into place, so a failed build leaves nothing.
An append writes its new shard and FAISS file beside the listed ones and then the manifest that
lists them (renamed atomically over the old one), so an interrupted append leaves the previous
index intact (the files it wrote are deleted then or at the next write). Appending embeds only
the new images into a new shard and adds them to the FAISS index without retraining it: nothing
already indexed is recomputed.
Images are embedded by :class:`~progreid.search.gallery.Gallery`, the index as an object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from progreid.data.registry import NAME_PARSERS
from progreid.data.sample import DatasetError, list_images
from progreid.search import ann as ann_lib
from progreid.search.ranking import prepare
from progreid.utils.io import atomic_write, atomic_write_json

FORMAT = "progreid-index-1"
MANIFEST = "manifest.json"
SHARD_DIR = "features"
ANN_FILE = "ann.faiss"
ANN_THRESHOLD = 20000
RECALL_QUERIES = 200
AnnPolicy = Literal["auto", "ivf", "none"]
#: The file names identities and cameras are read from by default: Market-1501's.
DEFAULT_NAMING = "market1501"


class GalleryIndexError(DatasetError):
    """An index folder is missing, malformed or inconsistent; the message names it."""


@dataclass(frozen=True)
class IndexItem:
    """One indexed image: absolute path, identity and 0-based camera (-1 when unknown)."""

    path: str
    pid: int
    camid: int


@dataclass
class GalleryIndex:
    """An opened index folder. ``features`` holds the raw embeddings (N x D, float32); ``root``
    is None for an index in memory that was never saved (:class:`~progreid.search.gallery.
    Gallery`); ``skipped`` maps the image files left out to why; ``naming`` is the dataset whose
    file names give identities and cameras (:func:`~progreid.search.embed.parse_name`)."""

    root: Path | None
    model: str
    metric: str
    dim: int
    items: list[IndexItem]
    shards: list[str]
    ann_policy: str = "auto"
    ann_threshold: int = ANN_THRESHOLD
    ann: dict[str, Any] | None = None
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    skipped: dict[str, str] = field(default_factory=dict)
    naming: str = DEFAULT_NAMING

    def __len__(self) -> int:
        return len(self.items)

    @property
    def searchable(self) -> np.ndarray:
        """The features as searched: L2-normalised for the cosine metric."""
        return prepare(torch.from_numpy(self.features), self.metric).numpy()

    def load_ann(self) -> Any:
        """The FAISS index, or None when the gallery is searched exactly."""
        return ann_lib.read_ann(self.root / self.ann.get("file", ANN_FILE)) if self.ann else None

    def manifest(self) -> dict[str, Any]:
        return {"format": FORMAT, "model": self.model, "metric": self.metric, "dim": self.dim,
                "count": len(self.items), "shards": self.shards, "ann_policy": self.ann_policy,
                "ann_threshold": self.ann_threshold, "ann": self.ann,
                "items": [asdict(item) for item in self.items], "skipped": self.skipped,
                "naming": self.naming}


def open_index(root: str | Path) -> GalleryIndex:
    """Read ``root/manifest.json`` and its feature shards; errors name what is wrong."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise GalleryIndexError(f"{root} is not a progreid index (no {MANIFEST}); build one "
                                "with progreid index RUN_DIR IMAGES_DIR --out INDEX_DIR")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GalleryIndexError(f"{path}: not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise GalleryIndexError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    shards = [np.load(root / SHARD_DIR / name) for name in manifest["shards"]]
    features = np.concatenate(shards) if shards else np.zeros((0, manifest["dim"]), np.float32)
    items = [IndexItem(**item) for item in manifest["items"]]
    if features.shape != (len(items), manifest["dim"]):
        raise GalleryIndexError(f"{root}: feature shards hold {features.shape} but the manifest "
                                f"lists {len(items)} items of dimension {manifest['dim']}")
    return GalleryIndex(root, manifest["model"], manifest["metric"], manifest["dim"], items,
                        manifest["shards"], manifest["ann_policy"], manifest["ann_threshold"],
                        manifest["ann"], features, manifest.get("skipped", {}),
                        manifest.get("naming", DEFAULT_NAMING))


def folder_images(images_dir: str | Path) -> list[Path]:
    """Image files under ``images_dir`` (recursively, sorted)."""
    folder = Path(images_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    images = list_images(folder, recursive=True)
    if not images:
        raise DatasetError(f"no images (.jpg, .png, ...) found under {folder}")
    return images


def _write_shard(index: GalleryIndex, features: np.ndarray) -> None:
    name = f"{len(index.shards):05d}.npy"
    atomic_write(index.root / SHARD_DIR / name,
                 lambda fh: np.save(fh, np.ascontiguousarray(features, np.float32)), binary=True)
    index.shards.append(name)


def _update_ann(index: GalleryIndex, new_features: np.ndarray, seed: int = 0) -> None:
    """Add new vectors to an existing FAISS index, or build one once the policy asks for it;
    then re-check recall@10 on a sample of the gallery and raise ``nprobe`` if it dropped."""
    wanted = index.ann_policy == "ivf" or (index.ann_policy == "auto"
                                           and len(index) >= index.ann_threshold)
    if not wanted and index.ann is None:
        return
    searchable = index.searchable
    if index.ann is None:
        faiss_index = ann_lib.build_ivf(searchable, seed=seed)
    else:
        faiss_index = index.load_ann()
        ann_lib.add_vectors(faiss_index, prepare(torch.from_numpy(new_features),
                                                 index.metric).numpy())
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(searchable), min(RECALL_QUERIES, len(searchable)), replace=False)
    nprobe, recall = ann_lib.tune_nprobe(faiss_index, searchable, searchable[np.sort(sample)])
    name = f"ann-{len(index.shards):05d}.faiss"  # a new file: the manifest still lists the old
    ann_lib.write_ann(faiss_index, index.root / name)
    index.ann = {"kind": "ivf_flat", "nlist": int(faiss_index.nlist), "nprobe": nprobe,
                 "recall_at_10": recall, "recall_queries": len(sample),
                 "count": int(faiss_index.ntotal), "file": name}


def check_new_root(root: str | Path) -> None:
    """Refuse to write a new index over an existing one or into a folder holding anything."""
    root = Path(root)
    if (root / MANIFEST).exists():
        raise GalleryIndexError(f"{root} already holds an index; add images with --append or "
                                "choose another --out")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise GalleryIndexError(f"{root} exists and is not a progreid index; choose another "
                                f"--out or delete {root}")


def empty_index(root: Path | None, model: str, metric: str, ann: AnnPolicy = "auto",
                ann_threshold: int = ANN_THRESHOLD, naming: str = DEFAULT_NAMING) -> GalleryIndex:
    """An index without items (``root`` None: in memory, not saved yet)."""
    if ann not in ("auto", "ivf", "none"):
        raise ValueError(f"ann must be 'auto', 'ivf' or 'none', got {ann!r}")
    if naming not in NAME_PARSERS:
        raise ValueError(f"naming must be a dataset name, one of {', '.join(NAME_PARSERS)}; got "
                         f"{naming!r}")
    return GalleryIndex(root, model, metric, 0, [], [], ann, ann_threshold, naming=naming)


def add_items(index: GalleryIndex, features: np.ndarray, items: Sequence[IndexItem]) -> None:
    """Append ``N x D`` features and their items in memory (:func:`write_new_items` saves)."""
    if features.ndim != 2 or len(features) != len(items):
        raise ValueError(f"{len(items)} items need {len(items)} x D features, got "
                         f"{features.shape}")
    if index.dim and features.shape[1] != index.dim:
        raise GalleryIndexError(f"{index.root}: the model gives {features.shape[1]}-d embeddings "
                                f"but the index holds {index.dim}-d ones")
    index.dim = features.shape[1]
    index.features = (features if not len(index) else np.concatenate([index.features, features]))
    index.items.extend(items)


def write_new_items(index: GalleryIndex, count: int) -> None:
    """Save the last ``count`` items (if any) as a new shard, add them to the FAISS index
    (building it when the policy asks for it), then write the manifest that lists them. Files
    that no manifest lists (this write's, when it fails; an interrupted one's) are deleted."""
    listed = list(index.shards), index.ann
    try:
        if count:
            features = index.features[len(index) - count:]
            _write_shard(index, features)
            _update_ann(index, features)
        atomic_write_json(index.root / MANIFEST, index.manifest())
    except BaseException:
        index.shards, index.ann = listed
        raise
    finally:
        _remove_unlisted(index)


def _remove_unlisted(index: GalleryIndex) -> None:
    """Delete the feature shards and FAISS files under ``index.root`` that its manifest does not
    list; ``index`` lists what the manifest on disk does (the new one, or after a failed write
    the previous one), so the manifest is not read back."""
    root = index.root
    if not (root / MANIFEST).is_file():
        return
    listed = {root / SHARD_DIR / name for name in index.shards}
    listed.add(root / (index.ann or {}).get("file", ANN_FILE))
    for path in [*(root / SHARD_DIR).glob("*.npy"), *root.glob("ann*.faiss")]:
        if path not in listed:
            path.unlink()
