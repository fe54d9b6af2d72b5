"""What torch's exporters share: silencing their notes and the dynamic batch axis."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporters' notes (torchvision ops it skips, pytree deprecations, ONNX
    graph passes)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def batch_axis() -> tuple[dict[int, torch.export.Dim]]:
    """The dynamic batch axis of a module's one input (the output's follows)."""
    return ({0: torch.export.Dim("batch")},)
