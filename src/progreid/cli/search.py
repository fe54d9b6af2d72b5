"""`progreid search INDEX_DIR QUERY_IMAGE... --top 10 [--rerank] [--json] [--picture PNG]`: a
:class:`progreid.Gallery` searched for query images. A matched gallery file that has moved since
indexing is reported (a warning, and ``moved`` in the JSON) and left out of the picture."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("search", help="rank an index's gallery for query images")
    parser.add_argument("index", help="index folder (progreid index)")
    parser.add_argument("queries", nargs="+", metavar="QUERY_IMAGE")
    parser.add_argument("--top", type=int, default=10, help="matches per query")
    parser.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")
    parser.add_argument("--exact", action="store_true",
                        help="exact search even when the index has a FAISS index")
    parser.add_argument("--json", action="store_true", help="print only JSON on stdout")
    parser.add_argument("--picture", metavar="PNG", help="also draw the ranked lists into PNG")
    parser.add_argument("--model", help="run folder or model.pt (default: the index's model)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from progreid.config import ConfigError
    from progreid.deploy.api import load
    from progreid.search.gallery import Gallery
    from progreid.search.picture import draw_ranked_lists
    from progreid.utils.device import resolve_device

    if args.top < 1:
        raise ConfigError(f"--top {args.top}: must be at least 1")
    resolve_device(args.device)  # a missing CUDA is named as --device, not load()'s device=
    model = load(args.model, args.device) if args.model else None
    gallery = Gallery.load(args.index, model, args.device)
    results = gallery.search(args.queries, args.top, rerank=args.rerank, exact=args.exact)
    moved = sorted({m.path for r in results for m in r.matches if not Path(m.path).is_file()})
    if moved:
        print(f"progreid search: warning: {len(moved)} matched gallery files have moved since "
              f"indexing: {', '.join(moved)}", file=sys.stderr)
    picture = draw_ranked_lists(results, args.picture) if args.picture else None
    if args.json:
        print(json.dumps({"picture": str(picture) if picture else None, "moved": moved,
                          "results": [r.to_dict() for r in results]}, indent=2))
        return 0
    for result in results:
        print(f"query {result.query}")
        for m in result.matches:
            print(f"  {m.rank:3d}  {m.distance:8.4f}  {m.status or '':8s}  {m.path}")
    if picture:
        print(f"picture: {picture}")
    return 0
