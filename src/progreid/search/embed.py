"""Dataset samples -> embeddings through :meth:`Bundle.embedder`, exactly as evaluation computes
them, and the identity and camera of a Market-style file name (gallery items and queries)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from progreid.data.loading import Workers
from progreid.data.registry import NAME_PARSERS
from progreid.data.sample import Sample
from progreid.deploy.bundle import Bundle

#: Identity / camera stand-in for an image whose name does not follow the Market-1501 pattern.
UNKNOWN = -1


def parse_name(path: Path, naming: str = "market1501") -> tuple[int, int]:
    """(identity, camera) of a file name in the layout of dataset ``naming`` (default Market's
    ``PPPP_cC...``; :data:`~progreid.data.registry.NAME_PARSERS`); ``(-1, -1)`` otherwise.

    Market's junk identity ``-1`` and names with camera ``c0`` are unknown too.
    """
    parsed = NAME_PARSERS[naming](path.name)
    if parsed is None or min(parsed) < 0:
        return UNKNOWN, UNKNOWN
    return parsed


def embed_samples(bundle: Bundle, samples: Sequence[Sample], device: torch.device | str = "cpu",
                  batch_size: int = 64, workers: Workers = 0) -> torch.Tensor:
    """``N x D`` float32 CPU embeddings of ``samples``."""
    return bundle.embedder().extract(samples, device, batch_size, workers).features.float().cpu()
