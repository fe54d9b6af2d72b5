"""Export a run's model for deployment: ONNX or ``torch.export`` (``.pt2``), verified against
PyTorch.

The exported graph takes a ``uint8 B x 3 x H x W`` RGB batch (dynamic ``B``) at the run's input
size and returns the ``B x D`` test embedding exactly as evaluation computes it: normalisation,
the network, the mirrored-image average when ``eval.flip`` is on, and the PCA projection
(PLA Sec. 4.2) when the bundle has one. PLA's 10-crop test-time augmentation and
``eval.centre_crop`` are not exported (their resize does not trace); a run configured with
either exports with flip averaging of the whole image instead.

ONNX goes through torch's current exporter (``torch.onnx.export(..., dynamo=True)``, which needs
onnxscript) and carries the run's config in its ``metadata_props``
(:func:`~progreid.deploy.onnx_backend.export_metadata`, with the match threshold when the run
has one), so :func:`progreid.load` can serve it;
``half`` runs the network in float16 between the float32 normalisation and the float32 flip
average and PCA (for GPU serving). ``.pt2`` is :func:`torch.export.save` of the same module,
with the same metadata as the extra file ``progreid.json``; load it with
:func:`torch.export.load`.

Every export is checked before it lands at its path: the file is loaded back (onnxruntime or
:func:`torch.export.load`) and run on random batches of two sizes against the float32 PyTorch
model. The largest absolute difference must not exceed 1e-4; for float16, the largest
difference divided by the largest absolute feature value must not exceed 1e-2.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from progreid.deploy.bundle import Bundle, load_bundle
from progreid.deploy.onnx_backend import INPUT_NAME, OUTPUT_NAME, export_metadata
from progreid.errors import ExportError
from progreid.evaluation.features import Embedder
from progreid.utils.exporting import batch_axis, quiet_exporter
from progreid.utils.io import atomic_path, atomic_write_json, probe_writable

Format = Literal["onnx", "pt2"]
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "pt2": ".pt2"}
#: Largest absolute difference from PyTorch of a float32 export.
TOLERANCE = 1e-4
#: Largest difference over the largest absolute feature of a float16 export.
HALF_TOLERANCE = 1e-2
VERIFY_BATCH_SIZES = (1, 3)
#: The metadata of a ``.pt2`` file (``torch.export.load(..., extra_files=...)``).
PT2_METADATA = "progreid.json"


class HalfNetwork(nn.Module):
    """A float16 copy of ``net`` between float32 input and output."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = copy.deepcopy(net).half()
        self.normalization = net.normalization

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.half()).float()


class EmbeddingModel(nn.Module):
    """uint8 images -> test embedding: the bundle's :class:`Embedder` (without 10 crops)."""

    def __init__(self, embedder: Embedder) -> None:
        super().__init__()
        self.net = embedder.model.eval()
        self.embedder = dataclasses.replace(embedder, ten_crop=False, centre_crop=False,
                                            amp=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedder.embed(images)

    def in_float16(self) -> EmbeddingModel:
        """The same embedding with the network in float16 (this one is left as it is)."""
        return EmbeddingModel(dataclasses.replace(self.embedder,
                                                  model=HalfNetwork(self.net))).eval()


def embedding_model(bundle: Bundle) -> EmbeddingModel:
    """The deployable module of a bundle, on the CPU in eval mode."""
    bundle.model.cpu()
    return EmbeddingModel(bundle.embedder()).eval()


@dataclass(frozen=True)
class ExportResult:
    """Where the export went, what it takes and returns, and how close it is to PyTorch:
    ``tolerance`` bounds ``checked`` (``max_abs_diff``, or ``max_rel_diff`` for float16)."""

    path: str
    format: str
    input_shape: list[int | str]
    embedding_dim: int
    flip: bool
    pca: bool
    half: bool
    max_abs_diff: float
    max_rel_diff: float
    checked: str
    tolerance: float


@dataclass(frozen=True)
class Difference:
    """Largest absolute difference from PyTorch and the largest absolute PyTorch feature."""

    absolute: float
    scale: float

    @property
    def relative(self) -> float:
        return self.absolute / self.scale if self.scale > 0 else self.absolute


def random_images(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8,
                         generator=generator)


def resolve_tolerance(tolerance: float | None, half: bool) -> float:
    """``tolerance``, by default :data:`HALF_TOLERANCE` with ``half``, else :data:`TOLERANCE`."""
    return (HALF_TOLERANCE if half else TOLERANCE) if tolerance is None else tolerance


def check_format(fmt: str, half: bool = False) -> None:
    if fmt not in SUFFIXES:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(SUFFIXES)}")
    if half and fmt != "onnx":
        raise ExportError(f"half precision (--half) is for ONNX only, not {fmt}")
    if fmt == "onnx":
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as exc:
            raise ExportError("ONNX export needs onnxscript and onnxruntime, the 'export' "
                              "extra: pip install 'progreid[export]'") from exc


def write_onnx(module: nn.Module, example: torch.Tensor, path: Path,
               metadata: dict[str, str]) -> None:
    """torch's current ONNX exporter (``dynamo=True``), input ``images`` and output
    ``embedding`` with a dynamic batch axis, ``metadata`` in the model's metadata_props."""
    try:
        with quiet_exporter():
            program = torch.onnx.export(module, (example,), input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], dynamo=True,
                                        dynamic_shapes=batch_axis(), verbose=False)
    except torch.onnx.OnnxExporterError as exc:
        raise ExportError(f"ONNX export failed: {str(exc).splitlines()[0]}") from exc
    program.model.metadata_props.update(metadata)
    program.save(str(path))


def write_pt2(module: nn.Module, example: torch.Tensor, path: Path,
              metadata: dict[str, str]) -> None:
    """:func:`torch.export.export` with a dynamic batch axis, saved with ``metadata`` as the
    extra file ``progreid.json``."""
    with quiet_exporter():
        program = torch.export.export(module, (example,), dynamic_shapes=batch_axis())
    with open(path, "wb") as handle:  # a handle: torch.export.save expects a .pt2 name
        torch.export.save(program, handle, extra_files={PT2_METADATA: json.dumps(metadata)})


WRITERS: dict[str, Callable[[nn.Module, torch.Tensor, Path, dict[str, str]], None]] = {
    "onnx": write_onnx, "pt2": write_pt2}


def exported_runner(path: Path, fmt: Format) -> Callable[[torch.Tensor], np.ndarray]:
    """The exported file at ``path`` loaded back as a function of a uint8 batch."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]
    with open(path, "rb") as handle:
        loaded = torch.export.load(handle).module()

    def run(images: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return loaded(images).numpy()
    return run


def difference(module: nn.Module, path: Path, fmt: Format, height: int, width: int,
               batch_sizes: Sequence[int] = VERIFY_BATCH_SIZES, seed: int = 0) -> Difference:
    """How far the exported file at ``path`` is from ``module`` over random uint8 batches of
    each size in ``batch_sizes``."""
    run = exported_runner(path, fmt)
    worst, scale = 0.0, 0.0
    for i, batch in enumerate(batch_sizes):
        images = random_images(batch, height, width, seed + i)
        with torch.inference_mode():
            expected = module(images).numpy()
        got = run(images)
        if got.shape != expected.shape:
            raise ExportError(f"{path}: exported model returned shape {got.shape} for a batch of "
                              f"{batch}; PyTorch returns {expected.shape}")
        worst = max(worst, float(np.abs(got.astype(np.float64) - expected).max()))
        scale = max(scale, float(np.abs(expected).max()))
    return Difference(worst, scale)


def export_module(module: EmbeddingModel, fmt: Format, out: str | Path, height: int, width: int,
                  tolerance: float | None = None, half: bool = False,
                  metadata: dict[str, str] | None = None) -> Difference:
    """Export ``module`` (its network in float16 with ``half``) to ``out`` and verify it
    against ``module``; ``tolerance`` (default :data:`TOLERANCE`, :data:`HALF_TOLERANCE`)
    bounds the absolute difference, or with ``half`` the relative one.

    The file is written under a temporary name and only renamed onto ``out`` when the check
    passes, so a failed export leaves nothing behind.
    """
    check_format(fmt, half)
    tolerance = resolve_tolerance(tolerance, half)
    module = module.eval()
    example = random_images(2, height, width, seed=1234)
    with atomic_path(out) as tmp:
        WRITERS[fmt](module.in_float16() if half else module, example, tmp, metadata or {})
        diff = difference(module, tmp, fmt, height, width)
        measured = diff.relative if half else diff.absolute
        if not measured <= tolerance:
            raise ExportError(f"{out}: exported {fmt} model differs from PyTorch by {measured:.3g}"
                              f" ({'relative' if half else 'absolute'}; tolerance "
                              f"{tolerance:g}); nothing was written")
    return diff


def export_run(run: str | Path, fmt: Format = "onnx", out: str | Path | None = None,
               tolerance: float | None = None, half: bool = False) -> ExportResult:
    """Export the model of a run folder (or ``model.pt`` / ``model.safetensors``), verify it
    and write ``<out>.json`` beside it describing the input, the output and the measured
    difference. ``out`` defaults to ``model.onnx`` (``model-fp16.onnx`` with ``half``) or
    ``model.pt2`` in the run folder."""
    check_format(fmt, half)
    tolerance = resolve_tolerance(tolerance, half)
    run = Path(run)
    if out is None:
        out = (run if run.is_dir() else run.parent) / f"model{'-fp16' if half else ''}" \
                                                      f"{SUFFIXES[fmt]}"
    probe_writable(Path(out).parent, f"--out {out}")
    bundle = load_bundle(run, "cpu")
    module = embedding_model(bundle)
    height, width = bundle.config.data.height, bundle.config.data.width
    with torch.inference_mode():
        dim = int(module(random_images(1, height, width, seed=0)).shape[1])
    diff = export_module(module, fmt, out, height, width, tolerance, half,
                         export_metadata(bundle.config, dim, half, bundle.match_threshold))
    result = ExportResult(str(out), fmt, ["batch", 3, height, width], dim, module.embedder.flip,
                          module.embedder.projection is not None, half, diff.absolute,
                          diff.relative, "max_rel_diff" if half else "max_abs_diff", tolerance)
    try:
        atomic_write_json(f"{out}.json", {**asdict(result), "input": "uint8 RGB, channels first",
                                          "output": "embedding (float32)"})
    except BaseException:
        Path(out).unlink()  # no exported model without its description
        raise
    return result
