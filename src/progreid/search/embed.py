"""Dataset samples -> embeddings through :meth:`Bundle.embedder`, exactly as evaluation computes
them, and the identity and camera of a Market-style file name (gallery items and queries)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from progreid.data.loading import Workers
from progreid.data.market import MARKET_NAME
from progreid.data.sample import Sample
from progreid.deploy.bundle import Bundle

#: Identity / camera stand-in for an image whose name does not follow the Market-1501 pattern.
UNKNOWN = -1


def parse_name(path: Path, pattern: re.Pattern[str] = MARKET_NAME) -> tuple[int, int]:
    """(identity, 0-based camera) of a Market-style name ``PPPP_cC...``; ``(-1, -1)`` otherwise.

    Market's junk identity ``-1`` and names with camera ``c0`` are unknown too.
    """
    match = pattern.match(path.name)
    if match is None or int(match["pid"]) < 0 or int(match["camid"]) < 1:
        return UNKNOWN, UNKNOWN
    return int(match["pid"]), int(match["camid"]) - 1


def embed_samples(bundle: Bundle, samples: Sequence[Sample], device: torch.device | str = "cpu",
                  batch_size: int = 64, workers: Workers = 0) -> torch.Tensor:
    """``N x D`` float32 CPU embeddings of ``samples``."""
    return bundle.embedder().extract(samples, device, batch_size, workers).features.float().cpu()
