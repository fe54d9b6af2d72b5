"""The ONNX backend of :func:`progreid.load`: a file written by ``progreid export --format onnx``
run by onnxruntime, with the interface of the PyTorch model (:class:`ReIDModel`).

The graph holds the normalisation, the network, the flip average and the PCA; what the API needs
besides travels in the file's ``metadata_props`` (:func:`export_metadata`): the run's config
(input size, metric; ``eval.ten_crop`` and ``eval.centre_crop`` off, as exported), the embedding
length, the precision the network runs in and the run's match threshold (absent from files
exported before it was recorded, and from runs without one). A 10-crop or centre-crop run's
threshold was calibrated on those views' features; the exported flip-averaged features are
close to them, not equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from progreid.config import Config, config_from_dict, config_to_dict
from progreid.deploy.api import ReIDModel
from progreid.errors import CheckpointError, MissingDependencyError
from progreid.evaluation.onnx_runtime import session_options
from progreid.evaluation.threshold import MatchThreshold

FORMAT = "progreid-onnx-1"
#: The ``metadata_props`` keys (all values are strings).
FORMAT_KEY, CONFIG_KEY, DIM_KEY, PRECISION_KEY, THRESHOLD_KEY = (
    "progreid.format", "progreid.config", "progreid.embedding_dim", "progreid.precision",
    "progreid.match_threshold")
INPUT_NAME, OUTPUT_NAME = "images", "embedding"


def export_metadata(cfg: Config, dim: int, half: bool,
                    match_threshold: MatchThreshold | None = None) -> dict[str, str]:
    """What an exported file carries for :func:`load_onnx`: ``cfg`` as the graph computes it
    (10-crop and centre crop are not exported), ``dim``, the network's precision and the match
    threshold."""
    exported = cfg.model_copy(update={"eval": cfg.eval.model_copy(
        update={"ten_crop": False, "centre_crop": False})})
    metadata = {FORMAT_KEY: FORMAT, CONFIG_KEY: json.dumps(config_to_dict(exported)),
                DIM_KEY: str(dim), PRECISION_KEY: "float16" if half else "float32"}
    if match_threshold is not None:
        metadata[THRESHOLD_KEY] = json.dumps(match_threshold.to_dict())
    return metadata


def require_onnxruntime() -> Any:
    """The onnxruntime module, or an error naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("ONNX models need onnxruntime, the 'export' extra: "
                                     "pip install 'progreid[export]'") from exc
    return onnxruntime


@dataclass
class OnnxReIDModel(ReIDModel):
    """An exported ONNX model in an onnxruntime session on ``device`` (CPU or CUDA)."""

    session: Any
    path: Path
    device: torch.device
    config: Config
    embedding_dim: int
    dtype: torch.dtype = torch.float32
    calibration: MatchThreshold | None = None

    @property
    def dim(self) -> int:
        return self.embedding_dim

    def _embed_batch(self, batch: torch.Tensor) -> torch.Tensor:
        images = np.ascontiguousarray(batch.cpu().numpy())
        features = self.session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
        return torch.from_numpy(features).to(self.device)


def session_device(device: str, available: list[str]) -> tuple[torch.device, list[Any]]:
    """The torch device and onnxruntime providers for ``device`` (``auto``: CUDA when both
    onnxruntime's CUDA provider and a torch CUDA device are there)."""
    if device == "auto":
        cuda = "CUDAExecutionProvider" in available and torch.cuda.is_available()
        device = "cuda" if cuda else "cpu"
    target = torch.device(device)
    if target.type == "cpu":
        return target, ["CPUExecutionProvider"]
    if target.type != "cuda":
        raise ValueError(f"device {device!r}: ONNX models run on 'cpu' or 'cuda'")
    if "CUDAExecutionProvider" not in available:
        raise ValueError(f"device {device!r}: this onnxruntime has no CUDA provider; install "
                         "onnxruntime-gpu or use device='cpu'")
    return target, [("CUDAExecutionProvider", {"device_id": target.index or 0})]


def load_onnx(path: Path, device: str = "auto",
              dtype: torch.dtype = torch.float32) -> OnnxReIDModel:
    """An exported ``.onnx`` file as a :class:`ReIDModel`; on the CPU, onnxruntime uses the
    caller's torch thread count."""
    if dtype != torch.float32:
        raise ValueError(f"dtype {dtype}: an ONNX model computes in the precision it was "
                         "exported in (progreid export --half for float16); load it with the "
                         "default dtype")
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    ort = require_onnxruntime()
    target, providers = session_device(device, ort.get_available_providers())
    try:
        session = ort.InferenceSession(str(path), session_options(), providers=providers)
    except Exception as exc:  # onnxruntime's own error types are not public
        raise CheckpointError(f"{path} is not a readable ONNX model "
                              f"({str(exc).strip().splitlines()[0]})") from exc
    metadata = session.get_modelmeta().custom_metadata_map
    if metadata.get(FORMAT_KEY) != FORMAT:
        raise CheckpointError(f"{path} has no progreid metadata ({FORMAT_KEY} = {FORMAT}); "
                              "export the run again with `progreid export RUN --format onnx`")
    config = config_from_dict(json.loads(metadata[CONFIG_KEY]), source=str(path))
    precision = torch.float16 if metadata.get(PRECISION_KEY) == "float16" else torch.float32
    try:
        calibration = (MatchThreshold.from_dict(json.loads(metadata[THRESHOLD_KEY]))
                       if THRESHOLD_KEY in metadata else None)
    except ValueError as exc:
        raise CheckpointError(f"{path}: unreadable {THRESHOLD_KEY} ({exc})") from exc
    return OnnxReIDModel(session, path.resolve(), target, config, int(metadata[DIM_KEY]),
                         precision, calibration)
