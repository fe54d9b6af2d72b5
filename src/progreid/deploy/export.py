"""Export a run's model for deployment: ONNX or TorchScript, verified against PyTorch.

The exported graph takes a ``uint8 B x 3 x H x W`` RGB batch (dynamic ``B``) at the run's input
size and returns the ``B x D`` test embedding exactly as evaluation computes it: normalisation,
the network, the mirrored-image average when ``eval.flip`` is on, and the PCA projection
(PLA Sec. 4.2) when the bundle has one. PLA's 10-crop test-time augmentation is not exported
(its resize does not trace); a run configured with it exports with flip averaging instead.

Every export is checked before it lands at its path: the file is loaded back (onnxruntime for
ONNX, ``torch.jit.load`` for TorchScript) and run on random batches of two sizes; the largest
absolute difference from the PyTorch model must not exceed the tolerance (1e-4).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from progreid.deploy.bundle import Bundle, load_bundle
from progreid.errors import ExportError
from progreid.evaluation.features import Embedder
from progreid.utils.io import atomic_path, atomic_write_json

Format = Literal["onnx", "torchscript"]
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
TOLERANCE = 1e-4
ONNX_OPSET = 17
VERIFY_BATCH_SIZES = (1, 3)


class EmbeddingModel(nn.Module):
    """uint8 images -> test embedding: the bundle's :class:`Embedder` (without 10 crops)."""

    def __init__(self, embedder: Embedder) -> None:
        super().__init__()
        self.net = embedder.model.eval()
        self.embedder = dataclasses.replace(embedder, ten_crop=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedder.embed(images)


def embedding_model(bundle: Bundle) -> EmbeddingModel:
    """The deployable module of a bundle, on the CPU in eval mode."""
    bundle.model.cpu()
    return EmbeddingModel(bundle.embedder()).eval()


@dataclass(frozen=True)
class ExportResult:
    """Where the export went, what it takes and returns, and how close it is to PyTorch."""

    path: str
    format: str
    input_shape: list[int | str]
    embedding_dim: int
    flip: bool
    pca: bool
    max_abs_diff: float
    tolerance: float


def random_images(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8,
                         generator=generator)


def check_format(fmt: str) -> None:
    if fmt not in SUFFIXES:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(SUFFIXES)}")


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ExportError("ONNX export needs onnx and onnxruntime, the 'export' extra: "
                          "pip install 'progreid[export]'") from exc


def write_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    """The legacy TorchScript-based exporter (``dynamo=False``: no onnxscript needed), opset 17,
    with a dynamic batch axis on input ``images`` and output ``embedding``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, on purpose
        try:
            torch.onnx.export(module, (example,), str(path), input_names=["images"],
                              output_names=["embedding"], opset_version=ONNX_OPSET,
                              dynamo=False,
                              dynamic_axes={"images": {0: "batch"}, "embedding": {0: "batch"}})
        except torch.onnx.OnnxExporterError as exc:
            raise ExportError(f"ONNX export failed: {str(exc).splitlines()[0]}") from exc


def write_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # No check_trace (it traces twice more): the file is checked by max_difference instead.
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(path))


def max_difference(module: nn.Module, path: Path, fmt: Format, height: int, width: int,
                   batch_sizes: Sequence[int] = VERIFY_BATCH_SIZES, seed: int = 0) -> float:
    """Largest absolute difference between ``module`` and the exported file at ``path`` over
    random uint8 batches of each size in ``batch_sizes``."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run(images: torch.Tensor) -> np.ndarray:
            return session.run(["embedding"], {"images": images.numpy()})[0]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loaded = torch.jit.load(str(path), map_location="cpu")

        def run(images: torch.Tensor) -> np.ndarray:
            with torch.inference_mode():
                return loaded(images).numpy()
    worst = 0.0
    for i, batch in enumerate(batch_sizes):
        images = random_images(batch, height, width, seed + i)
        with torch.inference_mode():
            expected = module(images).numpy()
        got = run(images)
        if got.shape != expected.shape:
            raise ExportError(f"{path}: exported model returned shape {got.shape} for a batch of "
                              f"{batch}; PyTorch returns {expected.shape}")
        worst = max(worst, float(np.abs(got.astype(np.float64) - expected).max()))
    return worst


def export_module(module: nn.Module, fmt: Format, out: str | Path, height: int, width: int,
                  tolerance: float = TOLERANCE) -> float:
    """Export ``module`` to ``out`` and verify it; return the max abs difference.

    The file is written under a temporary name and only renamed onto ``out`` when the check
    passes, so a failed export leaves nothing behind.
    """
    check_format(fmt)
    if fmt == "onnx":
        _require_onnx()
    module = module.eval()
    example = random_images(2, height, width, seed=1234)
    writer = write_onnx if fmt == "onnx" else write_torchscript
    with atomic_path(out) as tmp:
        writer(module, example, tmp)
        diff = max_difference(module, tmp, fmt, height, width)
        if not diff <= tolerance:
            raise ExportError(f"{out}: exported {fmt} model differs from PyTorch by {diff:.3g} "
                              f"(tolerance {tolerance:g}); nothing was written")
    return diff


def export_run(run: str | Path, fmt: Format = "onnx", out: str | Path | None = None,
               tolerance: float = TOLERANCE) -> ExportResult:
    """Export the model of a run folder (or ``model.pt``), verify it and write
    ``<out>.json`` beside it describing the input, the output and the measured difference."""
    check_format(fmt)
    run = Path(run)
    bundle = load_bundle(run, "cpu")
    module = embedding_model(bundle)
    if out is None:
        out = (run if run.is_dir() else run.parent) / f"model{SUFFIXES[fmt]}"
    height, width = bundle.config.data.height, bundle.config.data.width
    diff = export_module(module, fmt, out, height, width, tolerance)
    with torch.inference_mode():
        dim = int(module(random_images(1, height, width, seed=0)).shape[1])
    result = ExportResult(str(out), fmt, ["batch", 3, height, width], dim, module.embedder.flip,
                          module.embedder.projection is not None, diff, tolerance)
    atomic_write_json(f"{out}.json", {**asdict(result), "input": "uint8 RGB, channels first",
                                      "output": "embedding (float32)"})
    return result
