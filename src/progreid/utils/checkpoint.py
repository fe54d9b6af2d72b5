"""Checkpoint files: written atomically, read with ``weights_only=True`` (no code ever runs)."""

from __future__ import annotations

import pickle
import pickletools
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from progreid.errors import CheckpointError
from progreid.utils.io import atomic_path
from progreid.utils.run_folders import run_hint

#: How ``weights_only`` loading names what it refused: "GLOBAL posix.system".
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+)")
#: How each format ``torch.save`` writes begins: a zip archive, or the legacy pickled magic number.
_TORCH_HEADERS = (b"PK\x03\x04", pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2))
#: Pickle opcodes that import a function or class: the way a pickle runs code.
_IMPORTS = {"GLOBAL", "STACK_GLOBAL", "INST"}


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to a temp file and rename: a crash or a full disk never leaves half a file.

    On failure the previous checkpoint at ``path`` is intact; a full or read-only disk is an
    :class:`~progreid.errors.OutputError` naming the file.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a handle: torch then reports
        torch.save(payload, handle)                            # a full disk as its OSError


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely. Pickled code, truncation and non-checkpoints are refused.

    A pickle that names a function or class (the way pickled code runs) is refused as unsafe;
    any other failure means the file is truncated, corrupt or no torch checkpoint at all.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}{run_hint(path)}")
    try:
        with warnings.catch_warnings():  # a raw pickle's protocol: refused below in one line
            warnings.filterwarnings("ignore", "Detected pickle protocol")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # whatever a damaged or foreign file makes torch raise
        raise _load_error(path, exc) from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a progreid checkpoint (expected a dict, got "
                              f"{type(payload).__name__})")
    return payload


def _load_error(path: Path, exc: Exception) -> CheckpointError:
    """The user's message for a failed ``weights_only`` load, from torch's long one."""
    refused = _REFUSED_GLOBAL.search(str(exc)) if isinstance(exc, pickle.UnpicklingError) \
        else None
    with open(path, "rb") as handle:
        head = handle.read(len(_TORCH_HEADERS[1]))
    if refused:
        imported = refused.group(1)
    else:  # only a raw pickle (PROTO opcode first) is read whole; a zip or text is not one
        imported = _imported_name(path) if head.startswith(b"\x80") else None
    if imported:
        return CheckpointError(
            f"refusing to load {path}: it would import {imported}, which is neither a "
            "tensor nor plain data; progreid loads checkpoints with weights_only=True and never "
            "runs code from a file. Re-save it from trusted code as a state dict, or use an "
            "earlier checkpoint.")
    if not any(header.startswith(head) or head.startswith(header) for header in _TORCH_HEADERS):
        return CheckpointError(f"{path} is not a progreid checkpoint or model.pt (not a file "
                               "torch.save wrote); pass a run folder, its model.pt or "
                               "checkpoints/last.pt")
    lines = str(exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    return CheckpointError(f"checkpoint {path} is truncated or corrupt ({reason}); use an "
                           "earlier checkpoint or retrain")


def _imported_name(path: Path) -> str | None:
    """The first function or class that the raw pickle ``path`` (protocol 2 or later, not
    torch's zip) would import, read from its opcodes without running any; None if none."""
    data = path.read_bytes()
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in _IMPORTS:
                return ".".join(strings[-2:]) if arg is None else arg.replace(" ", ".")
            if isinstance(arg, str):
                strings.append(arg)
    except ValueError:  # cut short or not a pickle after all
        return None
    return None


def require_keys(payload: Mapping[str, Any], keys: tuple[str, ...], path: str | Path,
                 kind: str) -> None:
    """Fail naming ``path`` when ``payload`` lacks any of ``keys`` (not a ``kind`` file)."""
    missing = [key for key in keys if key not in payload]
    if missing:
        raise CheckpointError(f"{path} is not a {kind}: it lacks {', '.join(missing)} (it holds "
                              f"{', '.join(map(str, payload)) or 'nothing'})")


def load_weights(model: nn.Module, state_dict: Mapping[str, Any], path: str | Path) -> None:
    """``model.load_state_dict`` (strict) that names the file and every kind of mismatch."""
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise CheckpointError(f"{path}: the weights are not a state dict (names -> tensors)")
    own = model.state_dict()
    missing = [key for key in own if key not in state_dict]
    unexpected = [key for key in state_dict if key not in own]
    shapes = [f"{key} {tuple(value.shape)} in the file vs {tuple(own[key].shape)} in the model"
              for key, value in state_dict.items()
              if key in own and value.shape != own[key].shape]
    problems = [f"{len(items)} {label}: {'; '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
                for label, items in (("different shapes", shapes), ("missing keys", missing),
                                     ("unexpected keys", unexpected)) if items]
    if problems:
        raise CheckpointError(f"{path}: the weights do not fit the model (another architecture, "
                              f"width or number of classes?): {'. '.join(problems)}")
    model.load_state_dict(state_dict)


def check_same_architecture(saved: Mapping[str, Any], current: Mapping[str, Any],
                            path: str | Path) -> None:
    """Refuse a checkpoint written for another model, naming each differing setting."""
    differences = [f"{key}: {saved.get(key)!r} in the checkpoint, {value!r} now"
                   for key, value in current.items() if saved.get(key) != value]
    if differences:
        raise CheckpointError(
            f"{path} was written for another model ({'; '.join(differences)}). Resume with the "
            "config and dataset the run was started with (config.yaml in its run folder), or "
            "choose a new train.output_dir to start a new run.")
