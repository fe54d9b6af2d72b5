"""Checkpoint files: written atomically, read with ``weights_only=True`` (no code ever runs)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from progreid.utils.io import atomic_path


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, unsafe or of the wrong kind; the message names it."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to a temp file and rename: a crash or a full disk never leaves half a file.

    On failure (e.g. ``OSError: No space left on device``) the previous checkpoint at ``path``
    is intact and the error is re-raised naming the file.
    """
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except OSError as exc:
        raise CheckpointError(f"could not write checkpoint {path}: {exc}; the previous "
                              "checkpoint (if any) is intact") from exc


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely. Pickled code, truncation and non-checkpoints are refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled objects other than tensors and "
            f"plain data (weights_only=True rejected it: {str(exc).splitlines()[0]}). progreid "
            "never runs code from a checkpoint; re-save it from trusted code as a state dict."
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({exc}); "
                              "use an earlier checkpoint or retrain") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a progreid checkpoint (expected a dict, got "
                              f"{type(payload).__name__})")
    return payload
