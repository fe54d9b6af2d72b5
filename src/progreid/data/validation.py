"""Scan a dataset's images before training, so a bad file stops the run before any work starts.

Every image of every split is decoded exactly as the loaders will decode it
(:func:`progreid.data.loading.decode_image`: truncated, empty, non-image and oversized files fail;
grayscale, RGBA, 16-bit and palette images are converted to RGB) and hashed. A file with the
bytes of an earlier one (query first, then gallery, then train, so the evaluation protocol keeps
its images) is bad when it crosses from training to test images or carries another identity or
camera; a mere repeat within the same split group, identity and camera (real benchmarks have a
few: CUHK01 has 13) is kept and reported. ``data.on_bad_image`` decides what happens to the bad
files:
``error`` stops with one message listing them and the fix, ``skip`` leaves them out and the run
log lists them. A training identity with a single image cannot form a positive pair; it is not an
error (it still trains the classifier, and the PK sampler repeats its image), only reported.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from progreid.data.loading import Workers, decode_image, loader_workers
from progreid.data.sample import DatasetError, ReIDDataset, Sample, check_split, relabel
from progreid.errors import ConfigError
from progreid.utils.progress import progress

if TYPE_CHECKING:  # the recipe schema sits above the data layer
    from progreid.config import DataConfig

log = logging.getLogger(__name__)

#: Splits in the order their duplicates are resolved: the first copy of a file is kept.
SPLITS = ("query", "gallery", "train")
#: How many bad files an error message lists before "... and N more".
SHOWN = 20


@dataclass(frozen=True)
class BadImage:
    """One image that cannot be used: its split, index in that split, path and why."""

    split: str
    index: int
    path: Path
    reason: str


@dataclass
class ScanReport:
    """What :func:`scan_dataset` found: bad files, converted colour modes, singleton identities."""

    images: int
    bad: list[BadImage]
    converted: dict[str, int]
    single_image_ids: list[int]
    repeats: list[tuple[Path, Path]]

    def log_fields(self) -> dict[str, Any]:
        """The report as fields of a run-log record."""
        return {"images": self.images, "converted_modes": self.converted,
                "single_image_train_ids": self.single_image_ids,
                "repeated_files": [[str(path), str(first)] for path, first in self.repeats],
                "skipped": [{"split": b.split, "path": str(b.path), "reason": b.reason}
                            for b in self.bad]}


def _check(sample: Sample, height: int, width: int) -> tuple[str | None, str | None, str | None]:
    """Decode one image as training will: ``(failure, None, None)`` or ``(None, content hash,
    colour mode)``."""
    try:
        decode_image(sample.path, height, width)
        data = sample.path.read_bytes()
    except (DatasetError, OSError) as exc:
        return str(exc), None, None
    with Image.open(io.BytesIO(data)) as image:
        mode = image.mode
    return None, hashlib.blake2b(data, digest_size=16).hexdigest(), mode


def scan_dataset(dataset: ReIDDataset, height: int, width: int,
                 workers: Workers = 1) -> ScanReport:
    """Decode and hash every image of ``dataset`` (as many threads as ``data.workers`` gives
    loader workers, at least one); report what is wrong.

    Multi-query images are decoded but not counted as duplicates (they repeat the queries by
    design of the Market-1501 multi-query protocol).
    """
    splits = {"query": dataset.query, "gallery": dataset.gallery, "train": dataset.train,
              "multi_query": dataset.multi_query}
    jobs = [(split, index, sample) for split, samples in splits.items()
            for index, sample in enumerate(samples)]
    log.info("checking %d images of dataset %s", len(jobs), dataset.name)
    with ThreadPoolExecutor(max_workers=max(1, loader_workers(workers))) as pool:
        results = list(progress(pool.map(lambda job: _check(job[2], height, width), jobs),
                                "checking images", total=len(jobs)))
    bad: list[BadImage] = []
    repeats: list[tuple[Path, Path]] = []
    first: dict[str, tuple[str, Sample]] = {}
    converted: Counter[str] = Counter()
    for (split, index, sample), (reason, digest, mode) in zip(jobs, results, strict=True):
        if reason is not None:
            bad.append(BadImage(split, index, sample.path, reason))
            continue
        if mode != "RGB":
            converted[str(mode)] += 1
        if split not in SPLITS:
            continue
        if digest not in first:
            first[digest] = (split, sample)
            continue
        other_split, other = first[digest]
        conflict = _duplicate_conflict(split, sample, other_split, other)
        if conflict is None:
            repeats.append((sample.path, other.path))
        else:
            bad.append(BadImage(split, index, sample.path, f"{sample.path} has the same bytes "
                                f"as {other.path} ({other_split}) {conflict}"))
    counts = Counter(s.pid for s in dataset.train)
    single = sorted(pid for pid, count in counts.items() if count == 1)
    return ScanReport(len(jobs), bad, dict(converted), single, repeats)


def _duplicate_conflict(split: str, sample: Sample, other_split: str,
                        other: Sample) -> str | None:
    """Why a file repeating ``other`` is bad, or None for a harmless repeat."""
    if (split == "train") != (other_split == "train"):
        return "but training and test images must be disjoint"
    if (sample.pid, sample.camid) != (other.pid, other.camid):
        return "but another identity or camera"
    return None


def bad_images_error(dataset: ReIDDataset, report: ScanReport) -> DatasetError:
    """One message listing the bad files and the two ways forward."""
    lines = [f"[{b.split}] {b.reason}" for b in report.bad[:SHOWN]]
    if len(report.bad) > SHOWN:
        lines.append(f"... and {len(report.bad) - SHOWN} more")
    listing = "\n  ".join(lines)
    return DatasetError(
        f"{len(report.bad)} of the {report.images} images of dataset {dataset.name} cannot be "
        f"used:\n  {listing}\nFix or delete these files, or set data.on_bad_image: skip "
        "(--set data.on_bad_image=skip) to train without them; the skipped files are then "
        "listed in the run log (metrics.jsonl).")


def drop_bad_images(dataset: ReIDDataset, report: ScanReport) -> ReIDDataset:
    """``dataset`` without the bad images; a query whose identity has no gallery image left is
    dropped too (added to ``report.bad``). Training identities are relabelled 0..N-1."""
    bad = {(b.split, b.index) for b in report.bad}

    def kept(split: str, samples: list[Sample]) -> list[Sample]:
        return [s for i, s in enumerate(samples) if (split, i) not in bad]

    gallery = kept("gallery", dataset.gallery)
    gallery_pids = {s.pid for s in gallery}
    query = []
    for index, sample in enumerate(dataset.query):
        if ("query", index) in bad:
            continue
        if sample.pid not in gallery_pids:
            report.bad.append(BadImage("query", index, sample.path, f"{sample.path}: identity "
                                       f"{sample.pid} has no usable gallery image left"))
            continue
        query.append(sample)
    query_pids = {s.pid for s in query}
    multi_query = [s for s in kept("multi_query", dataset.multi_query) if s.pid in query_pids]
    result = replace(dataset, train=relabel(kept("train", dataset.train)), query=query,
                     gallery=gallery, multi_query=multi_query)
    for split in SPLITS:
        check_split(split, getattr(result, split), f"{dataset.name} after skipping bad images")
    return result


def validate_dataset(dataset: ReIDDataset, cfg: DataConfig) -> tuple[ReIDDataset, ScanReport]:
    """Scan ``dataset``; with bad images raise (``on_bad_image: error``) or drop them (``skip``).

    Returns the dataset to train on and the report for the run log.
    """
    report = scan_dataset(dataset, cfg.height, cfg.width, cfg.workers)
    if report.repeats:
        log.warning("%d images of %s repeat an earlier file of the same identity and camera "
                    "(kept; listed in the run log)", len(report.repeats), dataset.name)
    if report.single_image_ids:
        log.warning("%d training identities of %s have a single image and form no positive "
                    "pair (the PK sampler repeats it): %s", len(report.single_image_ids),
                    dataset.name, report.single_image_ids[:SHOWN])
    if not report.bad:
        return dataset, report
    if cfg.on_bad_image == "error":
        raise bad_images_error(dataset, report)
    dataset = drop_bad_images(dataset, report)
    log.warning("skipped %d bad images of %s (listed in the run log)", len(report.bad),
                dataset.name)
    return dataset, report


def check_against_dataset(cfg: DataConfig, dataset: ReIDDataset, world_size: int = 1) -> None:
    """Batch settings the training split cannot satisfy, named with their fix.

    ``data.p`` above the number of identities is the sampler's error
    (:class:`~progreid.data.sampler.PKSampler`); ``data.k`` above an identity's image count is
    fine by design (it samples with replacement). A batch larger than the whole training split
    would only repeat images, so it is refused here.
    """
    batch = cfg.p * cfg.k * world_size
    if batch > len(dataset.train):
        processes = f" x {world_size} processes" if world_size > 1 else ""
        raise ConfigError(
            f"data.p x data.k = {cfg.p} x {cfg.k}{processes} = {batch} images per batch, but the "
            f"training split of {dataset.name} has only {len(dataset.train)} images; lower "
            "data.p or data.k")
