"""`progreid evaluate RUN_DIR_OR_MODEL [--dataset NAME --root DIR] [--set eval.key=value ...]`."""

from __future__ import annotations

import argparse
import json
import time

from progreid.cli.common import parse_options


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="evaluate a trained model (CMC, mAP, mINP)")
    parser.add_argument("model", help="run folder or its model.pt")
    parser.add_argument("--dataset", help="dataset name (default: the one the run trained on)")
    parser.add_argument("--root", help="dataset folder")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset reader option, e.g. variant=labeled")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override eval settings, e.g. eval.rerank=true")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", action="store_true",
                        help="print every metric (CMC to rank 50) as JSON instead of a table")
    parser.add_argument("--no-feature-cache", dest="feature_cache", action="store_false",
                        help="embed the images even if an earlier evaluation of this model with "
                             "the same embedding settings stored their features (in features/ "
                             "beside the model), and store nothing")
    parser.set_defaults(func=run)


def check_eval_overrides(overrides: list[str]) -> None:
    """``evaluate`` changes only how a trained model is evaluated: a ``--set`` outside the
    ``eval`` section (the training recipe) is refused, naming it."""
    from progreid.errors import ConfigError

    for item in overrides:
        if not item.split("=", 1)[0].strip().startswith("eval."):
            raise ConfigError(f"--set {item!r}: evaluate takes only eval.* settings (e.g. "
                              "eval.rerank=true); the model was trained with the rest of its "
                              "recipe; to train with other settings use progreid train")


def run(args: argparse.Namespace) -> int:
    from progreid.cli.report_table import metrics_table
    from progreid.config import override_config
    from progreid.data import build_dataset, build_run_dataset
    from progreid.deploy.bundle import load_bundle, resolve_bundle_path
    from progreid.evaluation.feature_cache import FeatureCache
    from progreid.evaluation.pipeline import evaluate_model
    from progreid.utils.device import resolve_device

    check_eval_overrides(args.overrides)
    device = resolve_device(args.device)
    bundle = load_bundle(args.model, device)
    cfg = override_config(bundle.config, args.overrides, source="--set")
    model_path = resolve_bundle_path(args.model)
    name = args.dataset or cfg.data.dataset
    root = args.root or cfg.data.root
    if args.option or args.dataset:
        dataset = build_dataset(name, root, **parse_options(args.option))
    else:  # the run's dataset, with the split the run saved (split.json) if it drew one
        dataset = build_run_dataset(name, root, cfg.data.options, model_path.parent)
    cache = FeatureCache.beside(model_path, cfg, device) if args.feature_cache else None
    start = time.perf_counter()
    metrics = evaluate_model(bundle.embedder(cfg), dataset, cfg.eval, device, cfg.data.workers,
                             cache)
    seconds = round(time.perf_counter() - start, 1)
    model = str(model_path)
    if args.json:
        print(json.dumps({"model": model, "dataset": name, "seconds": seconds, **metrics},
                         indent=2))
    else:
        print(metrics_table({name: metrics}))
        print(f"model: {model}  ({len(dataset.query):,} queries, {len(dataset.gallery):,} "
              f"gallery images, {seconds:.0f} s; every metric: --json)")
    return 0
