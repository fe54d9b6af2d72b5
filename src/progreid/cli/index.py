"""`progreid index RUN_DIR IMAGES_DIR --out INDEX_DIR [--append] [--on-bad-image skip]
[--name DATASET]`: a :class:`progreid.Gallery` built from (or grown by) a folder of images, with
identities and cameras read from file names in the layout of dataset ``--name``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from progreid.data.registry import DATASET_NAMES

if TYPE_CHECKING:
    from progreid.search.gallery import Gallery


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("index", help="embed a folder of images into a gallery index")
    parser.add_argument("run", help="run folder or its model.pt (ignored with --append: the "
                                    "index's own model is used)")
    parser.add_argument("images", help="folder of images (searched recursively)")
    parser.add_argument("--out", required=True, help="index folder")
    parser.add_argument("--append", action="store_true",
                        help="add the images not yet indexed to an existing index")
    parser.add_argument("--ann", default="auto", choices=["auto", "ivf", "none"],
                        help="FAISS IVF index: auto = from --ann-threshold images on")
    parser.add_argument("--ann-threshold", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--on-bad-image", default="error", choices=["error", "skip"],
                        help="an image that does not decode stops the command (error), or is "
                             "left out and listed on stderr and in the manifest (skip)")
    parser.add_argument("--name", choices=DATASET_NAMES, metavar="DATASET",
                        help="read identities and cameras from file names in this dataset's "
                             f"layout: {', '.join(DATASET_NAMES)} (default: market1501; with "
                             "--append: the index's)")
    parser.set_defaults(func=run)


def add_images(gallery: Gallery, files: Sequence[Path], args: argparse.Namespace) -> int:
    """Embed ``files`` into ``gallery`` as ``--on-bad-image`` says; list what was skipped."""
    from progreid.errors import DatasetError
    from progreid.search.gallery import item_names

    try:
        added = gallery.add_files(files, args.batch_size, args.on_bad_image, show_progress=True)
    except DatasetError as exc:  # a file that does not decode (--on-bad-image error)
        raise DatasetError(f"{exc}; fix or delete it, or pass --on-bad-image skip to index "
                           "the other images") from exc
    for name in item_names(files, 0):
        if name in gallery.index.skipped:
            print(f"progreid index: skipped: {gallery.index.skipped[name]}", file=sys.stderr)
    if not len(gallery):
        raise DatasetError(f"none of the {len(files)} images under {args.images} could be "
                           "decoded; nothing was indexed")
    return added


def run(args: argparse.Namespace) -> int:
    from progreid.config import ConfigError
    from progreid.deploy.api import load
    from progreid.search.gallery import Gallery
    from progreid.search.index import DEFAULT_NAMING, SHARD_DIR, check_new_root, folder_images
    from progreid.utils.device import resolve_device
    from progreid.utils.io import remove_stale_temporaries

    resolve_device(args.device)  # a missing CUDA is named as --device, not load()'s device=
    start = time.perf_counter()
    if args.append:
        gallery = Gallery.load(args.out, device=args.device)
        if args.name not in (None, gallery.index.naming):
            raise ConfigError(f"--name {args.name}: the index {args.out} reads identities from "
                              f"{gallery.index.naming} file names; leave --name out to append "
                              "with them, or build a new index with --out")
        remove_stale_temporaries(args.out, Path(args.out) / SHARD_DIR)  # of a killed append
        added = add_images(gallery, gallery.new_files(args.images), args)
        gallery.save()
    else:
        check_new_root(args.out)
        images = folder_images(args.images)
        gallery = Gallery.create(load(args.run, args.device), args.ann, args.ann_threshold,
                                 args.name or DEFAULT_NAMING)
        added = add_images(gallery, images, args)
        gallery.save(args.out)
    index = gallery.index
    known = sum(item.pid >= 0 for item in index.items)
    print(f"{args.out}: {added} images added, {len(index)} in total ({known} with identity "
          f"and camera from their {index.naming} names), {index.dim}-d {index.metric} "
          f"embeddings, search: {'FAISS ' + str(index.ann) if index.ann else 'exact'}"
          + (f"; {len(index.skipped)} unreadable images skipped (listed in the manifest)"
             if index.skipped else ""))
    hint = (f"; no file name gave an identity as {index.naming} names it: pass --name DATASET "
            "to read another dataset's names" if not known and args.name is None else "")
    print(f"progreid index: {added} images indexed in {time.perf_counter() - start:.1f} s{hint}",
          file=sys.stderr)
    return 0
