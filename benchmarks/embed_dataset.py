"""Embedding a whole ReID test set (query + gallery) as evaluation does, path against path in one
run: the float32 NCHW network (progreid before channels_last became the default), channels_last
float32 (the default), channels_last under bf16 autocast (``eval.amp``, where the CPU has native
BF16), a bare ``model(x)`` loop over the same normalised tensors, and ONNX Runtime (optional extra
``progreid[export]``): as evaluation runs it (``eval.cpu_runtime: onnxruntime``, the export
timed) and on the file ``progreid export`` writes.

The images are decoded once, as the evaluation loader decodes them (its time is printed apart),
so every row times the same uint8 batches through :class:`~progreid.evaluation.features.Embedder`
(normalisation, flip averaging, the network) or its bare equivalent; each row is timed
``--repeats`` times, interleaved, and the best run counts (as ``timeit`` does). Every row's
features are compared with those of the first float32 NCHW run (timed first, so the whole test
set is not embedded an extra time) and the largest difference is printed beside its time.

    PYTHONPATH=src python benchmarks/embed_dataset.py --root ../shared/data/market1501
    PYTHONPATH=src python benchmarks/embed_dataset.py --root ../shared/data/market1501 \\
        --run runs/market1501/cpu-baseline --limit 4000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from train_throughput import device_name  # benchmarks/ is on sys.path when run as a script

from progreid.config import load_config
from progreid.data import build_dataset
from progreid.data.loading import build_eval_loader
from progreid.data.transforms import flip, normalize
from progreid.deploy.bundle import load_bundle
from progreid.evaluation.features import Embedder
from progreid.evaluation.onnx_runtime import session_options
from progreid.models import build_model
from progreid.utils.device import cpu_has_native_bf16


def network_and_size(args: argparse.Namespace) -> tuple[torch.nn.Module, int, int]:
    """The trained network of ``--run``, or an untrained ``--backbone`` (speed does not depend on
    the weights), with the input size."""
    if args.run:
        bundle = load_bundle(args.run, torch.device("cpu"))
        return bundle.model.eval(), bundle.config.data.height, bundle.config.data.width
    cfg = load_config(None, [f"model.backbone={args.backbone}", "model.pretrained=null"])
    torch.manual_seed(0)
    return build_model(751, **cfg.model.model_dump()).eval(), args.height, args.width


def decoded_batches(args: argparse.Namespace, height: int, width: int) -> list[torch.Tensor]:
    dataset = build_dataset(args.dataset, args.root)
    samples = (dataset.query + dataset.gallery)[:args.limit or None]
    start = time.perf_counter()
    batches = [images for images, *_ in build_eval_loader(samples, height, width,
                                                          args.batch, workers=0)]
    print(f"{args.dataset}: {len(samples):,} query + gallery images decoded at {height} x "
          f"{width} in {time.perf_counter() - start:.1f} s (not counted below)")
    return batches


def onnx_runner(embedder: Embedder, batches: list[torch.Tensor],
                folder: Path) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """ONNX Runtime on the exported embedding (flip included), or None without the extra."""
    try:
        import onnxruntime
    except ImportError:
        return None
    from progreid.deploy.export import EmbeddingModel, write_onnx

    path = folder / "model.onnx"
    write_onnx(EmbeddingModel(embedder).eval(), batches[0][:2], path, {})
    session = onnxruntime.InferenceSession(str(path), session_options(),
                                           providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


Row = tuple[torch.memory_format, Callable[[torch.Tensor], torch.Tensor]]


def paths(args: argparse.Namespace, network: torch.nn.Module, height: int, width: int,
          batches: list[torch.Tensor], folder: Path) -> dict[str, Row]:
    """Each path: the network's memory format while it runs, and the function of a uint8 batch
    that returns its features."""
    def embedder(**kwargs) -> Embedder:
        return Embedder(network, height, width, flip=True, **kwargs)

    last, plain = torch.channels_last, torch.contiguous_format
    rows: dict[str, Row] = {"float32 NCHW (before)": (plain, embedder(channels_last=False).embed),
                            "channels_last float32 (default)": (last, embedder().embed)}
    if cpu_has_native_bf16():
        rows["channels_last bf16 (eval.amp)"] = (last, embedder(amp=True).embed)
    mean, std = network.normalization
    ready = {id(x): [normalize(v, mean, std).contiguous(memory_format=last)
                     for v in (x, flip(x))] for x in batches}

    @torch.inference_mode()
    def bare(x: torch.Tensor) -> torch.Tensor:
        views = ready[id(x)]
        return sum(network(v) for v in views) / len(views)
    rows["bare model(x), channels_last float32"] = (last, bare)
    if not args.no_onnx:
        network.to(memory_format=plain)
        runner = onnx_runner(embedder(channels_last=False), batches, folder)
        if runner is not None:
            rows["onnxruntime (eval.cpu_runtime)"] = (plain, ort_embed(embedder, batches[0]))
            rows["onnxruntime, exported file"] = (plain, runner)
    return rows


def ort_embed(embedder: Callable[..., Embedder],
              first: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The evaluation path with ``eval.cpu_runtime: onnxruntime``: the network is exported at
    the ``first`` batch of every pass (the export's time counts), the views and normalisation
    run in PyTorch."""
    configured = embedder(cpu_runtime="onnxruntime")
    network = None

    def run(x: torch.Tensor) -> torch.Tensor:
        nonlocal network
        if network is None or x is first:
            network = configured.network(torch.device("cpu"))
        return configured.embed(x, network)
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--dataset", default="market1501")
    parser.add_argument("--run", help="a run folder or model.pt (default: an untrained network)")
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--height", type=int, default=160)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-onnx", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    network, height, width = network_and_size(args)
    batches = decoded_batches(args, height, width)
    count = sum(len(b) for b in batches)
    with tempfile.TemporaryDirectory() as folder:
        rows = paths(args, network, height, width, batches, Path(folder))
        seconds: dict[str, float] = {}
        errors: dict[str, float] = {}
        reference = None  # the first timed run of float32 NCHW, the path every row is checked on
        for _ in range(args.repeats):
            for name, (layout, run) in rows.items():
                network.to(memory_format=layout)
                start = time.perf_counter()
                features = torch.cat([run(x) for x in batches])
                seconds[name] = min(seconds.get(name, np.inf), time.perf_counter() - start)
                reference = features if reference is None else reference
                errors[name] = float((features - reference).abs().max() / reference.abs().max())
    print(f"device: {device_name(torch.device('cpu'))}; torch {torch.__version__}; flip "
          f"averaging (2 forward passes an image); batch {args.batch}; best of {args.repeats}; "
          "difference: largest |feature - float32 NCHW feature| / largest |float32 NCHW feature|")
    before = seconds["float32 NCHW (before)"]
    print(f"{'path':<40}{'seconds':>9}{'images/s':>10}{'vs before':>11}{'difference':>12}")
    for name, value in seconds.items():
        print(f"{name:<40}{value:>9.1f}{count / value:>10.1f}{before / value:>10.2f}x"
              f"{errors[name]:>12.2e}")


if __name__ == "__main__":
    main()
