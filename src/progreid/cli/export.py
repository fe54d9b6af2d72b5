"""`progreid export RUN_DIR --format onnx|torchscript [--out FILE]`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a run's embedding model to ONNX or "
                                           "TorchScript, verified against PyTorch")
    parser.add_argument("run", help="run folder or its model.pt")
    parser.add_argument("--format", dest="fmt", default="onnx", choices=["onnx", "torchscript"])
    parser.add_argument("--out", help="output file (default: RUN_DIR/model.onnx or "
                                      "RUN_DIR/model.torchscript.pt)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest allowed absolute difference from PyTorch")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from progreid.deploy.export import export_run

    result = export_run(args.run, args.fmt, args.out, args.tolerance)
    print(json.dumps(asdict(result), indent=2))
    return 0
