"""Training throughput: a standard ReID input pipeline against progreid's, in the same run.

Rows (images per second over the same number of PK batches; the rows are measured in turn
``--repeats`` times and the best of each is reported, as ``timeit`` does, since interference from
other work only slows a run down; medians and every run are in the ``--json`` output):
  standard       PIL decode + per-image enlarge/crop/flip/erase/normalise in DataLoader workers
                 (what the common toolkits do), fp32, NCHW, plain Adam.
  standard+step  the same input pipeline, progreid's step (bf16 autocast, channels_last, fused
                 Adam on CUDA): shows how much of the gain is the input pipeline.
  progreid       ``Trainer.train_epoch`` with the decoded-image cache and batched augmentation on
                 the device (bf16/channels_last/fused Adam by default on CUDA).
  bare loop      forward/backward/step over the very batches of the progreid epoch, already
                 augmented, held in memory on the device.
  bare+augment   the same uint8 batches in memory, augmented in the loop as the trainer does:
                 the trainer's own overhead (data reading, bookkeeping) is its time above this.

The data are synthetic pedestrians written to a temporary folder (Market-1501 layout, JPEGs at
Market's native 128 x 64), so the script runs anywhere, also offline. On CPU (defaults):

    PYTHONPATH=src python benchmarks/train_throughput.py

On a GPU, the issue's setting (ResNet-50 at 256 x 128, batch 128 = P 32 x K 4):

    PYTHONPATH=src python benchmarks/train_throughput.py --device cuda --model resnet50 \\
        --model-width 1 --height 256 --width 128 --batch 128 --workers 8 --steps 50
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from progreid.config import Config, load_config
from progreid.data import ReIDDataset, Sample, build_dataset
from progreid.data.cache import CACHE_DIR_ENV
from progreid.data.sampler import PKSampler
from progreid.data.synthetic import generate_pedestrians
from progreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from progreid.models import build_model
from progreid.models.backbones import BACKBONES, RESNETS
from progreid.training.objective import Objective
from progreid.training.trainer import Trainer, build_optimizer, seed_everything
from progreid.utils.device import resolve_device

K = 4


# ---------------------------------------------------------------- the standard pipeline
class StandardDataset(Dataset):
    """Per-image PIL pipeline as in the common ReID toolkits: decode, resize to the enlarged
    size, random crop, random flip, to tensor, normalise, random erasing (Zhong et al.)."""

    def __init__(self, samples: list[Sample], height: int, width: int, enlarge: float = 1.125,
                 flip_p: float = 0.5, erase_p: float = 0.5) -> None:
        self.samples, self.height, self.width = samples, height, width
        self.big = (round(height * enlarge), round(width * enlarge))
        self.flip_p, self.erase_p = flip_p, erase_p
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        with Image.open(sample.path) as image:
            image = image.convert("RGB").resize((self.big[1], self.big[0]),
                                                Image.Resampling.BILINEAR)
        top = random.randint(0, self.big[0] - self.height)
        left = random.randint(0, self.big[1] - self.width)
        image = image.crop((left, top, left + self.width, top + self.height))
        if random.random() < self.flip_p:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        pixels = (pixels - self.mean) / self.std
        if random.random() < self.erase_p:
            self._erase(pixels)
        return pixels, sample.pid

    def _erase(self, pixels: torch.Tensor, area=(0.02, 0.4), aspect=(0.3, 3.33)) -> None:
        """One random rectangle filled with random values (first of 100 attempts that fits)."""
        _, height, width = pixels.shape
        for _ in range(100):
            target = random.uniform(*area) * height * width
            ratio = random.uniform(*aspect)
            h, w = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < h < height and 0 < w < width:
                top, left = random.randint(0, height - h), random.randint(0, width - w)
                noise = (torch.rand(3, h, w) - self.mean) / self.std
                pixels[:, top:top + h, left:left + w] = noise
                return


def standard_loader(dataset: ReIDDataset, cfg: Config, batches: int, workers: int) -> DataLoader:
    sampler = PKSampler([s.pid for s in dataset.train], cfg.data.p, cfg.data.k,
                        num_batches=batches, seed=cfg.train.seed)
    return DataLoader(StandardDataset(dataset.train, cfg.data.height, cfg.data.width),
                      batch_sampler=sampler, num_workers=workers, persistent_workers=False,
                      pin_memory=torch.cuda.is_available())


# ---------------------------------------------------------------- a bare training step
class Step:
    """(augment) / forward / loss / backward / optimiser step, nothing else."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, objective: Objective,
                 device: torch.device, amp: bool, channels_last: bool,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.model, self.optimizer, self.objective = model, optimizer, objective
        self.device, self.amp, self.channels_last = device, amp, channels_last
        self.augment = augment

    def __call__(self, images: torch.Tensor, pids: torch.Tensor) -> None:
        images = images.to(self.device, non_blocking=True)
        pids = pids.to(self.device, non_blocking=True)
        if self.augment is not None:
            images = self.augment(images)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.amp):
            output = self.model(images)
        loss, _ = self.objective(output, pids)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def fresh_model(cfg: Config, num_classes: int, device: torch.device,
                channels_last: bool) -> nn.Module:
    seed_everything(cfg.train.seed)
    model = build_model(num_classes=num_classes, **cfg.model.model_dump()).to(device).train()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Step, batches: Iterable, warmup: int, device: torch.device) -> float:
    """Seconds for the batches after the first ``warmup`` ones."""
    start = None
    for i, (images, pids, *_) in enumerate(batches):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        step(images, pids)
    sync(device)
    return time.perf_counter() - start


# ---------------------------------------------------------------- the measurements
def measure(args: argparse.Namespace, root: Path) -> dict:
    overrides = [f"data.root={root}", f"data.height={args.height}", f"data.width={args.width}",
                 f"data.p={args.batch // K}", f"data.k={K}", f"data.workers={args.workers}",
                 f"data.batches_per_epoch={args.steps}", "data.cache=true",
                 f"model.backbone={args.model}", f"model.width={args.model_width}",
                 f"model.frozen_stride={args.frozen_stride}",
                 f"train.device={args.device}", f"train.compile={str(args.compile).lower()}",
                 f"train.amp={str(args.amp).lower()}",
                 "train.progress=false", f"train.output_dir={root / 'run'}"]
    cfg = load_config(None, overrides)
    dataset = build_dataset("synthetic", root)
    device = resolve_device(cfg.train.device)
    objective = Objective.from_config(cfg.loss)
    num_classes = dataset.num_train_pids
    counted = args.steps * args.batch
    rows: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        rows.setdefault(name, []).append(counted / seconds)

    start = time.perf_counter()
    trainer = Trainer(cfg, dataset, root / "run")  # builds the decoded-image cache
    cache_seconds = time.perf_counter() - start
    trainer.train_epoch(objective)  # warm-up epoch (cuDNN autotuning, compilation)

    for _ in range(args.repeats):
        model = fresh_model(cfg, num_classes, device, channels_last=False)
        step = Step(model, torch.optim.Adam(model.parameters(), lr=cfg.optim.lr), objective,
                    device, amp=False, channels_last=False)
        loader = standard_loader(dataset, cfg, args.warmup + args.steps, args.workers)
        record("standard", time_steps(step, loader, args.warmup, device))

        model = fresh_model(cfg, num_classes, device, trainer.channels_last)
        step = Step(model, build_optimizer(model, cfg, device), objective, device,
                    trainer.amp, trainer.channels_last)
        loader = standard_loader(dataset, cfg, args.warmup + args.steps, args.workers)
        record("standard+step", time_steps(step, loader, args.warmup, device))

        # The bare loops run the very batches of the trainer's next epoch, held in memory on
        # the device: already augmented, or as uint8 and augmented in the loop.
        augmented = list(trainer.batches())
        trainer.sampler.set_epoch(trainer.epoch)
        raw = [(images.to(device), pids) for images, pids, *_ in trainer.loader]
        generator = torch.Generator(device=device).manual_seed(0)
        for name, batches, augment in (
                ("bare loop", augmented, None),
                ("bare+augment", raw, functools.partial(trainer.augment, generator=generator))):
            model = fresh_model(cfg, num_classes, device, trainer.channels_last)
            forward = torch.compile(model) if args.compile else model
            step = Step(forward, build_optimizer(model, cfg, device), objective, device,
                        trainer.amp, trainer.channels_last, augment)
            for images, pids in batches[:args.warmup]:
                step(images, pids)
            record(name, time_steps(step, batches, 0, device))
        del augmented, raw

        sync(device)
        start = time.perf_counter()
        trainer.train_epoch(objective)
        sync(device)
        record("progreid", time.perf_counter() - start)

    return {"device": device_name(device), "torch": torch.__version__,
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "amp": trainer.amp, "channels_last": trainer.channels_last,
            "cache_build_seconds": round(cache_seconds, 2),
            "images_per_second": {name: round(max(v), 1) for name, v in rows.items()},
            "median_images_per_second": {name: round(statistics.median(v), 1)
                                         for name, v in rows.items()},
            "repeats": {name: [round(x, 1) for x in v] for name, v in rows.items()}}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"CPU {cpu}, {torch.get_num_threads()} threads"


def report(result: dict, print_fn: Callable[[str], None] = print) -> None:
    ips = result["images_per_second"]
    print_fn(f"device: {result['device']}  (torch {result['torch']}, amp={result['amp']}, "
             f"channels_last={result['channels_last']})")
    print_fn(f"settings: {result['settings']}")
    print_fn(f"decoded-image cache built in {result['cache_build_seconds']} s")
    print_fn(f"{'pipeline':<16}{'images/s':>12}")
    for name, value in ips.items():
        print_fn(f"{name:<16}{value:>12.1f}")
    print_fn(f"progreid / standard: {ips['progreid'] / ips['standard']:.2f}x")
    for bare in ("bare loop", "bare+augment"):
        print_fn(f"progreid trainer time over {bare}: "
                 f"{100 * (ips[bare] / ips['progreid'] - 1):+.1f}%")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--backbone", "--model", dest="model", default="resnet18",
                        choices=sorted(BACKBONES), help="any backbone of the registry")
    parser.add_argument("--model-width", type=float, default=None,
                        help="channel width multiplier (default: 0.25 for a ResNet, the demo's "
                             "network; 1 = the real network, which ImageNet weights need)")
    parser.add_argument("--amp", action="store_true",
                        help="bf16 autocast (train.amp; on the CPU only with native BF16)")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="P x K with K = 4")
    parser.add_argument("--steps", type=int, default=40,
                        help="timed batches per measurement (and per progreid epoch)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rows are measured in turn this many times; the best counts")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--identities", type=int, default=0,
                        help="training identities to generate (default: 2 batches' worth)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--frozen-stride", type=int, default=0, choices=[0, 2, 4, 8, 16],
                        help="model.frozen_stride: keep the layers up to this stride fixed")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder for the synthetic data (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if args.model_width is None:
        args.model_width = 0.25 if args.model in RESNETS else 1.0
    if args.batch % K or args.batch < 2 * K:
        parser.error(f"--batch must be a multiple of {K} and at least {2 * K}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    identities = args.identities or 2 * args.batch // K
    with tempfile.TemporaryDirectory(prefix="progreid-bench-") as tmp:
        os.environ[CACHE_DIR_ENV] = str(Path(tmp) / "cache")  # built afresh, then deleted
        root = args.data or Path(tmp) / "synthetic"
        generate_pedestrians(root, identities=identities + 2, train_identities=identities,
                             distractors=0, seed=0)
        result = measure(args, Path(root))
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
