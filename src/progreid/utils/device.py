"""The compute device a command asks for."""

from __future__ import annotations

import torch

from progreid.errors import ConfigError


def resolve_device(name: str, setting: str = "--device") -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is a :class:`ConfigError`
    naming ``setting``: a command's ``--device`` option or the recipe's ``train.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        given, fix = ((f"{setting} {name}", f"pass {setting} cpu") if setting.startswith("--")
                      else (f"{setting} = {name!r}", f"set {setting}=cpu"))
        raise ConfigError(f"{given}: no CUDA device is available on this machine; {fix}, or "
                          "auto to use CUDA only where there is one")
    return torch.device(name)
