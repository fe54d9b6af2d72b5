"""The compute device a command asks for."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from progreid.errors import ConfigError


def resolve_device(name: str, setting: str = "--device") -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is a :class:`ConfigError`
    naming ``setting``: a command's ``--device`` option, the recipe's ``train.device``, or a
    Python function's argument (``device``, as :func:`progreid.load` names it)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        if setting.startswith("--"):
            given, fix = f"{setting} {name}", f"pass {setting} cpu, or auto"
        elif "." in setting:
            given, fix = f"{setting} = {name!r}", f"set {setting}=cpu, or auto"
        else:
            given, fix = f"{setting}={name!r}", f"pass {setting}='cpu', or 'auto'"
        raise ConfigError(f"{given}: no CUDA device is available on this machine; {fix} to use "
                          "CUDA only where there is one")
    return torch.device(name)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 AVX-512 BF16 or AMX-BF16, Arm BF16), where
    oneDNN runs bf16 convolutions without emulating them. Read from ``/proc/cpuinfo`` (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(flags))


def use_bf16_autocast(setting: bool | None, device: torch.device) -> bool:
    """The resolved ``amp`` setting: default on CUDA; on the CPU only when asked for and the CPU
    has native BF16 (emulated bf16 is slower than float32), off elsewhere."""
    if device.type == "cuda":
        return True if setting is None else setting
    return bool(setting) and device.type == "cpu" and cpu_has_native_bf16()
