"""Small run folders for the deployment tests (profile, export, search, report): a synthetic
dataset and a bundle of an untrained tiny network, written without training."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from progreid.config import load_config, save_config
from progreid.data.synthetic import generate_pedestrians
from progreid.deploy.bundle import save_bundle
from progreid.evaluation.pca import Projection
from progreid.models import build_model
from progreid.utils.metrics_log import MetricsLog

HEIGHT, WIDTH = 64, 32
TRAIN_IDS = 12


def synthetic_data(root: Path) -> Path:
    """24 identities (12 for training), 6 cameras, 5 distractors, 64 x 32 images."""
    return generate_pedestrians(root, identities=24, train_identities=TRAIN_IDS, distractors=5,
                                height=HEIGHT, width=WIDTH, seed=0)


def make_run(run_dir: Path, data_root: Path, name: str = "baseline", pca_dim: int | None = 16,
             metric: str = "euclidean", height: int = HEIGHT, seed: int = 0,
             backbone: str = "resnet18", width: float = 0.125) -> Path:
    """A run folder as training leaves it (config, model.pt, metrics.jsonl, results.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(None, [f"data.root={data_root}", f"data.height={height}",
                             f"data.width={WIDTH}", f"model.name={name}",
                             f"model.backbone={backbone}", f"model.width={width}",
                             f"eval.metric={metric}", f"train.output_dir={run_dir}"])
    save_config(cfg, run_dir / "config.yaml")
    torch.manual_seed(seed)
    model = build_model(TRAIN_IDS, **cfg.model.model_dump()).eval()
    projection = None
    if pca_dim is not None:
        dim = model.embedding_dim
        components = torch.linalg.qr(torch.randn(dim, pca_dim))[0].T.contiguous()
        projection = Projection(0.1 * torch.randn(dim), components)
    save_bundle(run_dir / "model.pt", cfg, model, TRAIN_IDS, projection)
    log = MetricsLog(run_dir / "metrics.jsonl")
    for epoch in range(1, 5):
        log.write("epoch", epoch=epoch, loss=3.0 - 0.4 * epoch, ce=2.0 - 0.3 * epoch,
                  metric=1.0 - 0.1 * epoch, acc=0.15 * epoch, lr=1e-3, seconds=2.0,
                  images_per_second=32.0)
    log.write("eval", epoch=4, rank1=55.0, mAP=41.0)
    cmc = [min(100.0, 55.0 + 2.5 * i) for i in range(50)]
    (run_dir / "results.json").write_text(json.dumps(
        {"epoch": 4, "rank1": 55.0, "rank5": 65.0, "rank10": 77.5, "rank20": 100.0,
         "mAP": 41.0, "mINP": 20.0, "num_valid": 36, "cmc": cmc}))
    return run_dir


def tracker_example_code() -> str:
    """The tracker example of docs/deployment.md's Python API section (its first python
    block)."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text()
    section = page[page.index("## Python API"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("\n```", start)]


def run_tracker_example(folder: Path, run: Path, clip: Path) -> list[int]:
    """Run the tracker example (docs/deployment.md) as written in ``folder``, laid out as it
    assumes: the run under ``runs/demo``, ``clip`` (``frames/*.jpg`` and ``gt.txt``) as the
    demo's clip ``.cache/progreid/synthetic/clip``. Returns the track it printed for each box,
    in the order of ``gt.txt``'s rows (frame by frame)."""
    (folder / "runs" / "demo").mkdir(parents=True)
    (folder / "runs" / "demo" / "run").symlink_to(run)
    (folder / ".cache" / "progreid" / "synthetic").mkdir(parents=True)
    (folder / ".cache" / "progreid" / "synthetic" / "clip").symlink_to(clip.resolve())
    printed = io.StringIO()
    with contextlib.chdir(folder), contextlib.redirect_stdout(printed):
        exec(compile(tracker_example_code(), "docs/deployment.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert [int(line.split()[0]) for line in lines] == clip_rows(clip)[:, 0].tolist(), lines
    return [int(line.split(" track ")[1]) for line in lines]


def clip_rows(clip: Path) -> np.ndarray:
    """The rows of a clip's ``gt.txt`` (frame, id, left, top, width, height, ...)."""
    return np.loadtxt(clip / "gt.txt", delimiter=",", ndmin=2)


def crops_clip(folder: Path, frames: list[list[tuple[Path, int]]], height: int = 160,
               width: int = 64) -> Path:
    """A clip in the layout of the demo's (``frames/*.jpg``, ``gt.txt``) made of person crops:
    frame ``k`` shows the crops ``frames[k]`` (image, identity) side by side, each resized to
    ``height`` x ``width``, their boxes in ``gt.txt``."""
    (folder / "frames").mkdir(parents=True)
    rows = []
    for number, crops in enumerate(frames, start=1):
        canvas = Image.new("RGB", (width * len(crops), height))
        for slot, (path, pid) in enumerate(crops):
            canvas.paste(Image.open(path).convert("RGB").resize((width, height)), (slot * width, 0))
            rows.append(f"{number},{pid},{slot * width},0,{width},{height},1,-1,-1,-1")
        canvas.save(folder / "frames" / f"{number:06d}.jpg", quality=95)
    (folder / "gt.txt").write_text("\n".join(rows) + "\n")
    return folder


def adjusted_rand_index(truth: list[int], found: list[int]) -> float:
    """Hubert and Arabie's adjusted Rand index of two labellings (1: the same partition, about
    0: chance)."""
    _, truth_ids = np.unique(truth, return_inverse=True)
    _, found_ids = np.unique(found, return_inverse=True)
    table = np.zeros((truth_ids.max() + 1, found_ids.max() + 1))
    np.add.at(table, (truth_ids, found_ids), 1)
    pairs = lambda counts: float((counts * (counts - 1) / 2).sum())  # noqa: E731
    both, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected, best = rows * cols / pairs(np.array(len(truth))), (rows + cols) / 2
    return 1.0 if best == expected else (both - expected) / (best - expected)
