"""The gallery index (:mod:`progreid.search.index`) as a Python object: add images or
features, search them (exact, or FAISS when the saved index has it, as ``progreid search``
does), pool a tracklet into one query as the multi-query protocol does, save and load."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from progreid.deploy.api import Images, ReIDModel, load
from progreid.errors import DatasetError
from progreid.evaluation.protocols import Pooling, pool_multi_query
from progreid.search.embed import parse_name
from progreid.search.index import (
    ANN_THRESHOLD,
    DEFAULT_NAMING,
    AnnPolicy,
    GalleryIndex,
    IndexItem,
    add_items,
    check_new_root,
    empty_index,
    folder_images,
    open_index,
    write_new_items,
)
from progreid.search.query import QueryResult, rank_gallery, ranked_results
from progreid.utils.io import atomic_folder
from progreid.utils.progress import progress

#: Features (``N x D`` float array or tensor) or images (anything :meth:`ReIDModel.embed` takes).
FeaturesOrImages = np.ndarray | torch.Tensor | Images


def is_features(values: Any) -> bool:
    """A 2-D floating array or tensor is features; anything else is images."""
    return (isinstance(values, np.ndarray | torch.Tensor) and values.ndim == 2
            and (values.dtype.is_floating_point if isinstance(values, torch.Tensor)
                 else np.issubdtype(values.dtype, np.floating)))


def item_names(values: FeaturesOrImages, start: int) -> list[str]:
    """Absolute paths of image files, ``#N`` (the gallery position) for anything else."""
    return [str(Path(value).resolve()) if isinstance(value, str | Path) else f"#{start + i}"
            for i, value in enumerate(values)]


def labelled_items(names: Sequence[str], pids: Sequence[int] | None,
                   camids: Sequence[int] | None,
                   naming: str = DEFAULT_NAMING) -> list[IndexItem]:
    """Items named ``names``; identity and camera given, or parsed from names in the layout of
    dataset ``naming`` (-1 when unknown)."""
    parsed = [parse_name(Path(name), naming) for name in names]
    pids = [p for p, _ in parsed] if pids is None else pids
    camids = [c for _, c in parsed] if camids is None else camids
    if not len(names) == len(pids) == len(camids):
        raise ValueError(f"{len(names)} items but {len(pids)} identities and {len(camids)} "
                         "cameras")
    return [IndexItem(name, int(pid), int(camid))
            for name, pid, camid in zip(names, pids, camids, strict=True)]


def pool_tracklet(features: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """One ``1 x D`` query from the features of one person's images: their average or
    element-wise maximum, as the multi-query protocol pools (:func:`pool_multi_query`)."""
    same = np.zeros(len(features), dtype=np.int64)
    return pool_multi_query([0], [0], features, same, same, pooling)


class Gallery:
    """A searchable set of embeddings with their paths, identities and cameras.

    ``Gallery.create(model)`` starts an empty one in memory, ``Gallery.load(folder)`` opens an
    index folder (``progreid index`` or :meth:`save`). Items added since the last save are
    searched exactly (the saved FAISS index does not hold them).
    """

    def __init__(self, index: GalleryIndex, model: ReIDModel | None = None,
                 device: torch.device | str = "auto") -> None:
        self.index = index
        self.unsaved = 0
        self._model = model
        self._device = device

    @classmethod
    def create(cls, model: ReIDModel, ann: AnnPolicy = "auto", ann_threshold: int = ANN_THRESHOLD,
               naming: str = DEFAULT_NAMING) -> Gallery:
        """An empty gallery of ``model``'s embeddings; ``ann`` as ``progreid index --ann``;
        identities and cameras read from file names in the layout of dataset ``naming``."""
        return cls(empty_index(None, str(model.path), model.metric, ann, ann_threshold, naming),
                   model)

    @classmethod
    def load(cls, path: str | Path, model: ReIDModel | None = None,
             device: torch.device | str = "auto") -> Gallery:
        """Open an index folder; images are embedded with ``model`` (default: the index's model,
        loaded on ``device`` when first needed)."""
        return cls(open_index(path), model, device)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def model(self) -> ReIDModel:
        """The model that embeds images (the index's own unless one was given)."""
        if self._model is None:
            self._model = load(self.index.model, self._device)
        return self._model

    def features_of(self, values: FeaturesOrImages, bgr: bool = False,
                    batch_size: int = 64) -> np.ndarray:
        """``N x D`` float32 features: given, or embedded by the model."""
        if is_features(values):
            features = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) \
                else values
            return np.ascontiguousarray(features, dtype=np.float32)
        return self.model.embed(values, batch_size, bgr)

    def new_files(self, images: str | Path | Sequence[str | Path]) -> list[Path]:
        """The image files of a folder (searched recursively) or a list that the gallery does
        not hold yet (by absolute path): what ``progreid index --append`` adds."""
        paths = folder_images(images) if isinstance(images, str | Path) else images
        known = {item.path for item in self.index.items}
        return [Path(p).resolve() for p in paths if str(Path(p).resolve()) not in known]

    def add(self, values: FeaturesOrImages, paths: Sequence[str] | None = None,
            pids: Sequence[int] | None = None, camids: Sequence[int] | None = None,
            bgr: bool = False, batch_size: int = 64) -> int:
        """Add features or images (every one given, even a file already in the gallery: see
        :meth:`new_files`); returns how many. Names default to the files' absolute paths
        (``#N`` otherwise); identities and cameras to those parsed from the names (in the layout
        of the index's ``naming``; -1 when unknown)."""
        features = self.features_of(values, bgr, batch_size)
        names = list(paths) if paths is not None else item_names(values, len(self))
        add_items(self.index, features, labelled_items(names, pids, camids, self.index.naming))
        for name in names:
            self.index.skipped.pop(name, None)
        self.unsaved += len(features)
        return len(features)

    def add_files(self, files: Sequence[str | Path], batch_size: int = 64,
                  on_bad_image: Literal["error", "skip"] = "error",
                  show_progress: bool = False) -> int:
        """Add image files (as :meth:`add`); returns how many. A file that does not decode
        raises :class:`DatasetError` naming it, or with ``on_bad_image="skip"`` is left out and
        recorded with the reason in ``index.skipped`` (the manifest lists them).
        ``show_progress``: a progress bar on a terminal (:func:`progress`)."""
        kept: list[str | Path] = []
        features: list[np.ndarray] = []
        with progress(desc="indexing", total=len(files), enabled=show_progress) as bar:
            for start in range(0, len(files), batch_size):
                chunk = files[start:start + batch_size]
                try:
                    features.append(self.model.embed(chunk, batch_size))
                    kept.extend(chunk)
                except DatasetError:  # embed the chunk's files one by one to find the bad ones
                    if on_bad_image == "error":
                        raise
                    for path in chunk:
                        try:
                            features.append(self.model.embed([path]))
                            kept.append(path)
                        except DatasetError as exc:
                            self.index.skipped[item_names([path], 0)[0]] = str(exc)
                bar.update(len(chunk))
        if not kept:
            return 0
        return self.add(np.concatenate(features), paths=item_names(kept, 0))

    def search(self, queries: FeaturesOrImages, top_k: int = 10, pool: Pooling | None = None,
               bgr: bool = False, exact: bool = False, rerank: bool = False,
               batch_size: int = 64) -> list[QueryResult]:
        """The ``top_k`` nearest items of each query (features or images), nearest first; with
        ``pool`` (``avg`` or ``max``) the queries are one tracklet searched as one query.
        ``rerank`` re-ranks (k-reciprocal) with the model's ``eval`` settings (k1, k2,
        lambda_value); ``exact`` skips the FAISS index."""
        if len(self) == 0:
            raise ValueError("the gallery is empty: add images or features before searching")
        features = torch.from_numpy(self.features_of(queries, bgr, batch_size))
        if len(features) == 0:
            raise ValueError("search needs at least one query")
        items = labelled_items(item_names(queries, 0), None, None, self.index.naming)
        if pool is not None:
            features = pool_tracklet(features, pool)
            items = labelled_items([f"tracklet of {len(items)}"], None, None, self.index.naming)
        settings = self.model.config.eval if rerank else None
        distances, indices = rank_gallery(self.index, features, top_k,
                                          exact or self.unsaved > 0, settings)
        return ranked_results(items, self.index.items, distances, indices)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the gallery as an index folder: into its own folder, only what was added
        since it was saved (a new shard); into a new ``path``, everything."""
        root = self.index.root if path is None else Path(path)
        if root is None:
            raise ValueError("this gallery was never saved: pass the folder to save it into")
        if len(self) == 0:
            raise ValueError("the gallery is empty: add images or features before saving")
        if self.index.root is None or root.resolve() != self.index.root.resolve():
            self.index = self._copied_to(root)
        else:
            write_new_items(self.index, self.unsaved)
        self.unsaved = 0
        return root

    def _copied_to(self, root: Path) -> GalleryIndex:
        """A new index folder at ``root`` holding every item in one shard, written into a
        temporary folder renamed into place."""
        check_new_root(root)
        old = self.index
        with atomic_folder(root) as tmp:
            new = empty_index(tmp, old.model, old.metric, old.ann_policy, old.ann_threshold,
                              old.naming)
            new.skipped = dict(old.skipped)
            add_items(new, old.features, old.items)
            write_new_items(new, len(new))
        new.root = root
        return new
