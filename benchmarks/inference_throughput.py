"""Inference throughput: embeddings per second of a progreid model over batch sizes.

Each batch is a uint8 image batch already on the device (as the evaluation loader delivers it);
the timed work is progreid's ``Embedder.embed`` (normalisation + forward pass, optionally with the
flip test-time augmentation) in eval mode, under bf16 autocast and channels_last by default on
CUDA. On CPU (defaults: a small ResNet-18):

    PYTHONPATH=src python benchmarks/inference_throughput.py

On a GPU, ResNet-50 at 256 x 128 (the issue's setting; PLA reports 17,000 images/s on a
GTX 1080 Ti):

    PYTHONPATH=src python benchmarks/inference_throughput.py --device cuda --model resnet50 \\
        --model-width 1 --height 256 --width 128 --batch-sizes 32 64 128 256 512 1024
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch
from torch import nn
from train_throughput import device_name  # benchmarks/ is on sys.path when run as a script

from progreid.evaluation.features import Embedder
from progreid.models import build_model
from progreid.utils.device import resolve_device


def images_per_second(model: nn.Module, batch: torch.Tensor, flip: bool, amp: bool,
                      seconds: float, device: torch.device) -> float:
    """Repeat ``Embedder.embed`` for about ``seconds`` after a warm-up; return images per second."""
    autocast = (torch.autocast("cuda", torch.bfloat16) if amp and device.type == "cuda"
                else contextlib.nullcontext())
    embed = Embedder(model, *batch.shape[-2:], flip=flip).embed
    with torch.inference_mode(), autocast:
        for _ in range(3):
            embed(batch)
        _sync(device)
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            embed(batch)
            runs += 1
            if runs % 5 == 0:
                _sync(device)
        _sync(device)
        elapsed = time.perf_counter() - start
    return runs * batch.shape[0] / elapsed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--model", default="resnet18",
                        choices=["resnet18", "resnet34", "resnet50"])
    parser.add_argument("--name", default="baseline", choices=["baseline", "pla", "mgn"],
                        help="network (PLA: two 1024-d heads; MGN: multiple branches)")
    parser.add_argument("--model-width", type=float, default=0.25)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed per batch size")
    parser.add_argument("--flip", action="store_true", help="flip test-time augmentation")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast (default: on for CUDA)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="default: on for CUDA")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    amp = cuda if args.amp is None else args.amp
    channels_last = cuda if args.channels_last is None else args.channels_last
    if cuda:
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_model(num_classes=751, name=args.name, backbone=args.model,
                        width=args.model_width).to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if args.compile else model
    print(f"device: {device_name(device)}  (torch {torch.__version__}, {args.name}/{args.model} "
          f"width {args.model_width}, {args.height}x{args.width}, amp={amp}, "
          f"channels_last={channels_last}, flip={args.flip}, compile={args.compile})")
    print(f"{'batch':>6}{'images/s':>12}")
    rows = {}
    for size in args.batch_sizes:
        batch = torch.randint(0, 256, (size, 3, args.height, args.width), dtype=torch.uint8,
                              device=device)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        rows[size] = round(images_per_second(forward, batch, args.flip, amp, args.seconds,
                                             device), 1)
        print(f"{size:>6}{rows[size]:>12.1f}")
    if args.json:
        result = {"device": device_name(device), "torch": torch.__version__,
                  "settings": {k: v for k, v in vars(args).items() if k != "json"},
                  "amp": amp, "channels_last": channels_last, "images_per_second": rows}
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
