"""`progreid demo`: synthetic pedestrians -> train -> evaluate -> report, on the CPU in minutes."""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="generate synthetic pedestrians, train a small model, "
                                         "evaluate before and after training")
    parser.add_argument("--out", default="runs/demo", help="parent folder of the demo run")
    parser.add_argument("--data", default=".cache/progreid/synthetic",
                        help="where the synthetic dataset is generated (a folder holding it is "
                             "reused, one holding anything else refused)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a demo config value")
    parser.set_defaults(func=run)


def demo_config_path() -> Path:
    return Path(str(resources.files("progreid") / "recipes" / "demo.yaml"))


def run(args: argparse.Namespace) -> int:
    from progreid.cli.report_table import metrics_table
    from progreid.cli.synth import flag
    from progreid.config import ConfigError, load_config
    from progreid.data.synthetic import SyntheticSpecError, generate_pedestrians
    from progreid.data.synthetic_clip import write_clip
    from progreid.report.html import write_report
    from progreid.training.run import evaluate_untrained, train
    from progreid.utils.device import resolve_device

    run_dir = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    cfg = load_config(demo_config_path(), [f"data.root={args.data}",
                                           f"train.output_dir={run_dir}", *args.overrides])
    start = time.perf_counter()
    clip = Path(cfg.data.root) / "clip"
    print(f"[1/4] synthetic pedestrians -> {cfg.data.root} (a camera clip for trackers: {clip})")
    try:
        generate_pedestrians(cfg.data.root)
        write_clip(clip)
    except SyntheticSpecError as exc:  # the demo asks for the default dataset
        raise ConfigError(exc.spelled(flag)) from exc
    print("[2/4] evaluating the untrained network")
    before = evaluate_untrained(cfg)
    print(f"[3/4] training {cfg.model.backbone} x{cfg.model.width} for {cfg.train.epochs} epochs "
          f"-> {run_dir}")
    after = train(cfg)
    print()
    print(metrics_table({"before training": before, "after training": after}))
    print(f"\nrun folder: {run_dir}   ({time.perf_counter() - start:.0f} s)")
    print("[4/4] writing the HTML report")
    print(f"report: {write_report(run_dir, device=resolve_device(cfg.train.device))}")
    return 0
