"""`progreid export RUN_DIR --format onnx|pt2 [--half] [--out FILE]`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a run's embedding model to ONNX or "
                                           "torch.export (.pt2), verified against PyTorch")
    parser.add_argument("run", help="run folder, its model.pt or its model.safetensors")
    parser.add_argument("--format", dest="fmt", default="onnx", choices=["onnx", "pt2"])
    parser.add_argument("--half", action="store_true",
                        help="ONNX with the network in float16 (for GPU serving)")
    parser.add_argument("--out", help="output file (default: RUN_DIR/model.onnx, "
                                      "model-fp16.onnx with --half, or model.pt2)")
    parser.add_argument("--tolerance", type=float,
                        help="largest allowed difference from PyTorch: absolute (default "
                             "1e-4), or with --half relative to the largest feature value "
                             "(default 1e-2)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from progreid.deploy.export import export_run

    result = export_run(args.run, args.fmt, args.out, args.tolerance, args.half)
    print(json.dumps(asdict(result), indent=2))
    return 0
