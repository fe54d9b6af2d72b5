"""The Python API's overhead: ``ReIDModel.embed`` on uint8 numpy person crops against a bare
``model(x)`` loop over the same crops already resized, normalised and batched as tensors.

Both run in the same process with the same torch thread count, interleaved repeat by repeat
(the median time of each is kept), on the same 1,000 crops of random sizes (what a detector
gives a tracker). The model is an untrained network of the chosen architecture saved as a run's
``model.pt`` with ``eval.flip=false`` and no PCA, so both sides compute one forward pass per
image and the difference is the API's own work: resizing the crops as evaluation decodes files,
stacking them, the normalisation. The outputs are checked to agree before anything is timed.

    PYTHONPATH=src python benchmarks/embed_throughput.py                  # the demo's network
    PYTHONPATH=src python benchmarks/embed_throughput.py --backbone mobilenetv2 --model-width 1 \\
        --height 256 --width 128
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from train_throughput import device_name  # benchmarks/ is on sys.path when run as a script

import progreid
from progreid.config import load_config
from progreid.data.loading import image_array
from progreid.data.transforms import normalize
from progreid.deploy.api import ReIDModel
from progreid.deploy.bundle import save_bundle
from progreid.models import build_model


def make_model(folder: Path, backbone: str, model_width: float, height: int, width: int,
               device: str) -> ReIDModel:
    """An untrained network saved as ``folder/model.pt`` (no flip, no PCA) and loaded by the
    API."""
    cfg = load_config(None, [f"model.backbone={backbone}", f"model.width={model_width}",
                             f"data.height={height}", f"data.width={width}", "eval.flip=false"])
    torch.manual_seed(0)
    network = build_model(751, **cfg.model.model_dump()).eval()
    save_bundle(folder / "model.pt", cfg, network, 751)
    return progreid.load(folder / "model.pt", device=device)


def person_crops(count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` RGB uint8 crops, 60-300 pixels high, about twice as high as wide."""
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(count):
        height = int(rng.integers(60, 301))
        width = max(8, int(height * rng.uniform(0.35, 0.6)))
        crops.append(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return crops


def prebuilt_batches(model: ReIDModel, crops: list[np.ndarray],
                     batch_size: int) -> list[torch.Tensor]:
    """The crops as the bare loop gets them: resized, normalised, contiguous float batches on
    the device (the tensors the API's network sees)."""
    height, width = model.embedder.height, model.embedder.width
    pixels = torch.from_numpy(np.stack([image_array(Image.fromarray(c), height, width)
                                        for c in crops])).permute(0, 3, 1, 2).contiguous()
    mean, std = model.bundle.model.normalization
    return [normalize(pixels[i:i + batch_size].to(model.device), mean, std)
            for i in range(0, len(crops), batch_size)]


def bare_loop(model: ReIDModel, batches: list[torch.Tensor]) -> torch.Tensor:
    network = model.bundle.model
    with torch.inference_mode():
        return torch.cat([network(batch).float() for batch in batches])


def seconds_of(work: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of one call of ``work``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--model-width", type=float, default=0.25)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--crops", type=int, default=1000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each side")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of both sides (default: torch's own)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    crops = person_crops(args.crops)
    with tempfile.TemporaryDirectory() as folder:
        model = make_model(Path(folder), args.backbone, args.model_width, args.height,
                           args.width, args.device)
    print(f"device: {device_name(model.device)}, {torch.get_num_threads()} torch threads "
          f"(torch {torch.__version__}); {args.backbone} width {args.model_width} at "
          f"{args.height} x {args.width}, {args.crops} crops, median of {args.repeats}")
    print(f"{'batch':>6}{'embed img/s':>14}{'model(x) img/s':>16}{'overhead':>10}")
    for size in args.batch_sizes:
        batches = prebuilt_batches(model, crops, size)
        api = model.embed(crops, batch_size=size)
        np.testing.assert_allclose(api, bare_loop(model, batches).cpu().numpy(), rtol=1e-4,
                                   atol=1e-4)
        timings: dict[str, list[float]] = {"api": [], "bare": []}
        for _ in range(args.repeats):  # interleaved: both sides see the same machine load
            timings["api"].append(seconds_of(lambda s=size: model.embed(crops, s),
                                                 model.device))
            timings["bare"].append(seconds_of(lambda b=batches: bare_loop(model, b),
                                                  model.device))
        api_s, bare_s = (statistics.median(timings[k]) for k in ("api", "bare"))
        print(f"{size:>6}{len(crops) / api_s:>14.1f}{len(crops) / bare_s:>16.1f}"
              f"{100 * (api_s / bare_s - 1):>9.1f}%")


if __name__ == "__main__":
    main()
