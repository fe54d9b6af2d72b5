"""`progreid index RUN_DIR IMAGES_DIR --out INDEX_DIR [--append]`: a :class:`progreid.Gallery`
built from (or grown by) a folder of images."""

from __future__ import annotations

import argparse


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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from progreid.deploy.api import load
    from progreid.search.gallery import Gallery
    from progreid.search.index import check_new_root, folder_images

    if args.append:
        gallery = Gallery.load(args.out, device=args.device)
        added = gallery.add(gallery.new_files(args.images), batch_size=args.batch_size)
        gallery.save()
    else:
        check_new_root(args.out)
        images = folder_images(args.images)
        gallery = Gallery.create(load(args.run, args.device), args.ann, args.ann_threshold)
        added = gallery.add(images, batch_size=args.batch_size)
        gallery.save(args.out)
    index = gallery.index
    known = sum(item.pid >= 0 for item in index.items)
    print(f"{args.out}: {added} images added, {len(index)} in total ({known} with identity "
          f"and camera from their names), {index.dim}-d {index.metric} embeddings, "
          f"search: {'FAISS ' + str(index.ann) if index.ann else 'exact'}")
    return 0
